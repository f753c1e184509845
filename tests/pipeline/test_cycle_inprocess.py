"""The whole hourly cycle in-process (the same steps as the canvas), against the simulator over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from artq.errors import AuthFailed
from artq.pipeline import Runtime
from artq.pipeline.cycle import fetch_step
from artq.pipeline.runs import open_runs
from artq.storage import migrate, open_database
from artq.storage.models import (
    DashboardLatestForecast,
    Forecast,
    Observation,
    PipelineRun,
)
from tests.conftest import make_settings


def _count(db, model, *where):
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_cycle_stores_six_forecasts_and_rerun_replaces_them(trained_sqlite):
    from workers.canvas import run_cycle

    settings, t0, _ = trained_sqlite
    first = run_cycle(Runtime(settings), "ABP", t0)
    second = run_cycle(Runtime(settings), "ABP", t0)
    assert first["status"] == second["status"] == "succeeded"
    db = open_database(settings.database_url)
    assert _count(db, Forecast) == 6
    assert _count(db, DashboardLatestForecast) == 6
    with db.session() as s:
        run = s.scalar(select(PipelineRun))
        forecasts = list(s.scalars(select(Forecast).order_by(Forecast.horizon)))
    db.dispose()
    assert (run.status, run.attempts, run.origin) == ("succeeded", 2, t0)
    assert [f.target_hour for f in forecasts] == [t0 + timedelta(hours=h) for h in range(1, 7)]
    assert all(f.lower < f.upper for f in forecasts)


def test_fetch_with_a_wrong_secret_fails_clearly_and_stores_nothing(tmp_path, simulator):
    settings = make_settings(tmp_path, url=simulator.url, client_secret="not-the-secret")
    migrate(settings.database_url)
    rt = Runtime(settings)
    from artq.timeutil import last_complete_hour

    t0 = last_complete_hour()
    open_runs(rt, ["ABP"], t0, "test")
    payload = fetch_step(rt, ["ABP"], t0)
    rt.close()
    assert payload["applications"] == [] and payload["failed"]["ABP"].startswith(f"fetch: {AuthFailed.__name__}: ")
    db = open_database(settings.database_url)
    assert _count(db, Observation) == 0
    with db.session() as s:
        run = s.scalar(select(PipelineRun))
    db.dispose()
    assert run.status == "failed" and run.error.startswith("fetch: ")


def test_predict_without_a_model_is_recorded_per_horizon(tmp_path, simulator):
    from workers.canvas import run_cycle

    settings = make_settings(tmp_path, url=simulator.url)
    settings.backfill_days = 2
    migrate(settings.database_url)
    from artq.timeutil import last_complete_hour

    out = run_cycle(Runtime(settings), "ABP", last_complete_hour())
    assert out["status"] == "failed"
    assert out["error"] == "predict: no trained model for application 'ABP'. Run `artq train --app ABP` first."


def test_no_controller_configured_fails_in_one_line_naming_the_setting(tmp_path):
    from artq.errors import ConfigError
    from workers.canvas import run_cycle

    settings = make_settings(tmp_path)
    settings.celery.broker_url = "redis://127.0.0.1:6379/15"  # a fleet's settings with the controller forgotten
    migrate(settings.database_url)
    with pytest.raises(ConfigError) as exc:
        run_cycle(Runtime(settings), "ABP", use_broker=True)
    assert str(exc.value).startswith("no controller configured: set `source.url` (or ARTQ_SOURCE_URL)")
    assert "\n" not in str(exc.value)
    assert _count(open_database(settings.database_url), PipelineRun) == 0  # refused before any work


def test_a_source_outage_closes_the_in_process_run_as_failed(trained_sqlite):
    """The controller stays away past the retry policy: the run is closed with the reason, no traceback."""
    from artq.pipeline.cycle import run_in_process

    settings, t0, _ = trained_sqlite
    settings.source.url, settings.source.retries = "http://127.0.0.1:9", 0  # nothing listens there: refused
    rt = Runtime(settings)
    try:
        with rt.db.session() as s:  # forget the origin hour, so the fetch must ask the controller
            s.execute(Observation.__table__.delete().where(Observation.hour == t0))
        sleeps = []
        out = run_in_process(rt, ["ABP"], t0, "test", sleep=sleeps.append)["ABP"]
    finally:
        rt.close()
    assert out["status"] == "failed" and out["error"].startswith("fetch: SourceUnavailable: ")
    assert len(sleeps) == 6  # the source-outage policy's retries, each after a backoff


def test_a_model_whose_files_were_tampered_with_fails_that_application_only(trained_sqlite):
    """The checksum recorded at registration refuses a changed file; the run says so in one line."""
    from pathlib import Path

    from artq.pipeline.cycle import run_in_process

    settings, t0, trained = trained_sqlite
    artifact = Path(settings.models_dir) / "ABP" / "versions" / trained["version"] / "h2.ubj"
    artifact.write_bytes(artifact.read_bytes()[:-4] + b"\0\0\0\0")
    rt = Runtime(settings)
    try:
        out = run_in_process(rt, ["ABP"], t0, "test")["ABP"]
    finally:
        rt.close()
    assert out["status"] == "failed"
    assert out["error"].startswith(f"predict: checksum mismatch for h2.ubj in model version {trained['version']}")
