"""One cycle path on real workers: a batch of applications and a batch of one give the same
forecasts and intervals, failures are accounted per application, a batch that gives up closes
every run and releases every lock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
import sqlalchemy as sa

from artq.config import ApplicationSettings
from artq.pipeline import Runtime, champions, train_step
from artq.pipeline.cycle import run_in_process
from artq.storage import repository as repo
from artq.storage.models import Forecast, PipelineRun
from artq.timeutil import HOUR
from tests.pipeline.stored import stored_cycle
from tests.workers.conftest import FAULTS

pytestmark = pytest.mark.integration

CLONES = {"ABP2": 2.0, "ABP3": 0.5}  # copies of ABP's history, scaled: a leak between blocks would show


def make_fleet(cycle_env, ghost: bool = False) -> list[str]:
    """ABP plus scaled copies of its history sharing its model files; optionally an application nobody serves."""
    with cycle_env.db.engine.begin() as conn:
        for name, factor in CLONES.items():
            conn.execute(sa.text(
                "INSERT INTO observations (application, server, metric, hour, value, fetched_at) "
                "SELECT :name, server, metric, hour, value * :f, fetched_at FROM observations WHERE application = 'ABP'"),
                {"name": name, "f": factor})
    template_models = Path(cycle_env.settings.models_dir)
    models = cycle_env.tmp_path / "models"
    models.mkdir(exist_ok=True)
    names = ["ABP", *CLONES] + (["GHOST"] if ghost else [])
    for name in names:
        (models / name).symlink_to(template_models / "ABP", target_is_directory=True)
    share_models(cycle_env, names[1:])
    cycle_env.settings.models_dir = str(models)
    cycle_env.settings.applications = [ApplicationSettings(name=n) for n in names]
    cycle_env.settings.backfill_days = 2
    return names


def share_models(cycle_env, names: list[str]) -> None:
    """Register ABP's versions (same files, same hashes) and champion for ``names`` too."""
    with cycle_env.db.engine.begin() as conn:
        for name in names:
            for table in ("model_versions", "champions"):
                conn.execute(sa.text(f"DELETE FROM {table} WHERE application = :n"), {"n": name})
            conn.execute(sa.text(
                "INSERT INTO model_versions (application, version, status, path, created_at, training_start, training_end,"
                " metrics, reason, sha256, fingerprint) SELECT :n, version, status, path, created_at, training_start,"
                " training_end, metrics, reason, sha256, fingerprint FROM model_versions WHERE application = 'ABP'"), {"n": name})
            conn.execute(sa.text("INSERT INTO champions (application, version, previous, reason, promoted_at) SELECT :n,"
                                 " version, previous, reason, promoted_at FROM champions WHERE application = 'ABP'"), {"n": name})


def stored(cycle_env, application: str, origin) -> list[tuple]:
    with cycle_env.db.session() as s:
        return [(f.horizon, f.value, f.lower, f.upper, f.model_version)
                for f in repo.forecasts_for(s, application, origin)]


def test_a_batch_and_a_batch_of_one_store_identical_forecasts_with_the_recent_error_window(cycle_env, start_workers):
    names = make_fleet(cycle_env)[:2]  # ABP and ABP2
    cycle_env.settings.applications = cycle_env.settings.applications[:2]
    t0 = cycle_env.t0
    rt = Runtime(cycle_env.settings)
    try:
        # a model trained a day before the origin, then a day of cycles: its own recent errors exist
        day_before = train_step(rt, "ABP", until=t0 - 24 * HOUR)
        with rt.db.session() as s:
            champions.set_champion(s, "ABP", day_before["version"], "test: trained a day before the origin")
        share_models(cycle_env, names[1:])
        for k in range(29, 0, -1):  # from 5 h before the training end (replays: not in the window) on
            out = run_in_process(rt, names, t0 - k * HOUR, "test")
            assert {o["status"] for o in out.values()} == {"succeeded"}, out
        bundle, version = rt.champion("ABP")
        assert version == day_before["version"]
        # what the cycle at t0 reads back: the forecasts (and intervals) of the day since the training end
        _, earlier, frame = stored_cycle(rt, "ABP", t0, hours_before=24)
    finally:
        rt.close()

    config = cycle_env.write_config(fleet_batch_size=2)
    workers = start_workers(config, cycle_env.redis_url, n=2)
    cycle_env.use_broker(config)
    cycle_env.trigger(t0, applications=names)  # one batch of two
    for name in names:
        assert cycle_env.wait_for_run_of(name, t0, workers=workers).status == "succeeded"
    in_batch = stored(cycle_env, "ABP", t0)
    cycle_env.trigger(t0, applications=["ABP"])  # the same origin again, as a batch of one
    again = cycle_env.wait_for_run(t0, statuses=("succeeded",), workers=workers)
    assert again.attempts == 2
    alone = stored(cycle_env, "ABP", t0)
    assert alone == in_batch and [h for h, *_ in alone] == [1, 2, 3, 4, 5, 6]

    # the backtest's arithmetic on the same stored forecasts gives the same: the window was used
    expected = bundle.predict_frame(frame, [pd.Timestamp(t0)], past=earlier)
    for h, value, lower, upper, v in alone:
        one = expected[h].iloc[0]
        assert v == version
        assert value == pytest.approx(one["value"], rel=1e-9)
        assert (lower, upper) == (pytest.approx(one["lower"], rel=1e-9), pytest.approx(one["upper"], rel=1e-9)), h
    from artq.forecasting.batch import predict_many
    from artq.pipeline.feature_rows import build_rows, decode

    rt = Runtime(cycle_env.settings)
    try:
        layouts, _ = build_rows(rt, {"ABP": version}, t0)
        fixed = [predict_many([bundle], decode(layouts[0], h).loc[:, bundle.feature_names_], h)[0] for h in range(1, 7)]
    finally:
        rt.close()
    widths_live = [u - lo for _, _, lo, u, _ in alone]
    widths_fixed = [f["upper"] - f["lower"] for f in fixed]
    assert widths_live != pytest.approx(widths_fixed, rel=1e-6), "the recent-error window changed no interval"


def test_a_failing_application_is_isolated_and_beat_twice_starts_nothing(cycle_env, start_workers):
    names = make_fleet(cycle_env, ghost=True)
    config = cycle_env.write_config(fleet_batch_size=2)  # two batches: ABP+ABP2, ABP3+GHOST
    workers = start_workers(config, cycle_env.redis_url, n=2)
    app = cycle_env.use_broker(config)
    report = app.send_task("artq.cycle.dispatch", args=[cycle_env.t0.isoformat()]).get(timeout=60)
    assert (report["started"], report["batches"]) == (4, 2)
    again = app.send_task("artq.cycle.dispatch", args=[cycle_env.t0.isoformat()]).get(timeout=60)
    assert again["started"] == 0  # beat firing twice starts nothing
    runs = {name: cycle_env.wait_for_run_of(name, cycle_env.t0, workers=workers) for name in names}
    for name in ("ABP", *CLONES):
        assert runs[name].status == "succeeded", (name, runs[name].error)
        assert runs[name].task_ids["fetch"] and runs[name].task_ids["refresh"] and len(runs[name].task_ids["predict"]) == 6
    assert runs["GHOST"].status == "failed" and runs["GHOST"].error.startswith("fetch: UnknownApplication")
    with cycle_env.db.session() as s:
        counts = dict(s.execute(sa.select(Forecast.application, sa.func.count()).where(Forecast.origin == cycle_env.t0)
                                .group_by(Forecast.application)).all())
        assert s.scalar(sa.select(sa.func.count()).select_from(PipelineRun)) == 4
    assert counts == {"ABP": 6, "ABP2": 6, "ABP3": 6}


def test_a_batch_whose_fetch_gives_up_leaves_no_run_running_and_no_lock_held(cycle_env, start_workers):
    names = make_fleet(cycle_env)
    origin = cycle_env.t0 + timedelta(0)
    with cycle_env.db.engine.begin() as conn:  # the origin hour must come from the controller
        conn.execute(sa.text("DELETE FROM observations WHERE hour = :h"), {"h": origin.replace(tzinfo=None)})
    cycle_env.settings.source.url = "http://127.0.0.1:9"  # the controller is away for good: refused
    cycle_env.settings.source.retries = 0
    config = cycle_env.write_config(fleet_batch_size=3)
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(quick_retries=2), include=FAULTS)
    cycle_env.use_broker(config)
    cycle_env.trigger(origin, applications=names)
    runs = {name: cycle_env.wait_for_run_of(name, origin, timeout_s=90, workers=workers) for name in names}
    for name, run in runs.items():
        assert run.status == "failed", (name, run.status)
        assert run.error.startswith("fetch: SourceUnavailable: "), run.error
    client = redis.Redis.from_url(cycle_env.redis_url)
    try:
        assert client.keys("artq:cycle-lock:*") == []  # released by the task that gave up
    finally:
        client.close()
    logs = "".join(w.output() for w in workers)
    assert "retry 2 of 2" in logs and "Traceback" in logs  # retried by the policy, then logged with its traceback


def test_a_worker_with_no_controller_configured_fails_the_cycle_in_one_line(cycle_env, start_workers):
    cycle_env.settings.source.url = None  # a fleet's config with the controller forgotten: no simulator steps in
    config = cycle_env.write_config()
    workers = start_workers(config, cycle_env.redis_url, n=1)
    cycle_env.use_broker(config)
    cycle_env.trigger(cycle_env.t0)
    run = cycle_env.wait_for_run(cycle_env.t0, workers=workers)
    assert run.status == "failed"
    assert run.error.startswith("fetch: no controller configured: set `source.url` (or ARTQ_SOURCE_URL)")
    assert "\n" not in run.error and cycle_env.forecasts(cycle_env.t0) == []
