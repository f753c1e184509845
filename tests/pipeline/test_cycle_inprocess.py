"""The whole hourly cycle in-process (eager canvas), against the simulator over real HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from artq.errors import AuthFailed
from artq.pipeline import Runtime, fetch_step
from artq.pipeline.steps import begin_run
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
    begin_run(rt, "ABP", t0, "test")
    with pytest.raises(AuthFailed):
        fetch_step(rt, "ABP", t0)
    rt.close()
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
    assert set(out["failed"]) == {"1", "2", "3", "4", "5", "6"}
    assert "Run `artq train --app ABP` first." in out["failed"]["1"]
