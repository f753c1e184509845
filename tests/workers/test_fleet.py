"""The batched fleet cycle: the same forecasts as the single cycle, per-application failures, real workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from artq.config import ApplicationSettings
from artq.pipeline import Runtime
from artq.storage import repository as repo
from artq.storage.models import Forecast, PipelineRun
from artq.timeutil import HOUR

pytestmark = pytest.mark.integration

CLONES = {"ABP2": 2.0, "ABP3": 0.5}  # copies of ABP's history, scaled: a leak between blocks would show


def make_fleet(cycle_env, ghost: bool = False) -> list[str]:
    """ABP plus scaled copies of its history sharing its model; optionally an application nobody serves."""
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
    cycle_env.settings.models_dir = str(models)
    cycle_env.settings.applications = [ApplicationSettings(name=n) for n in names]
    cycle_env.settings.backfill_days = 2
    return names


def test_fleet_steps_give_the_single_cycle_forecasts(cycle_env):
    from artq.pipeline.fleet import (
        begin_runs,
        fleet_fetch_step,
        fleet_predict_step,
        fleet_refresh_step,
    )

    names = make_fleet(cycle_env)
    rt = Runtime(cycle_env.settings)
    t0 = cycle_env.t0
    try:
        begin_runs(rt, names, t0, "test")
        payload = fleet_fetch_step(rt, names, t0)
        results = [fleet_predict_step(rt, payload, h) for h in range(1, 7)]
        out = fleet_refresh_step(rt, results, names, t0)
        assert out["statuses"] == {"succeeded": 3}
        for name in names:
            bundle, _ = rt.champion(name)
            with rt.db.session() as s:
                frame = repo.load_frame(s, name, t0 - 168 * HOUR, t0)
                stored = repo.forecasts_for(s, name, t0)
            single = bundle.predict_all(frame, t0)
            assert [f.horizon for f in stored] == [1, 2, 3, 4, 5, 6]
            for f, one in zip(stored, single, strict=True):
                assert f.value == pytest.approx(one.value, rel=1e-12), (name, f.horizon)
                assert (f.lower, f.upper) == (pytest.approx(one.lower, rel=1e-12), pytest.approx(one.upper, rel=1e-12))
                assert [d[0] for d in f.drivers] == [d[0] for d in one.drivers]
    finally:
        rt.close()


def test_fleet_cycle_on_two_workers_isolates_a_failing_application(cycle_env, start_workers):
    names = make_fleet(cycle_env, ghost=True)
    config = cycle_env.write_config(fleet_batch_size=2)  # two batches: ABP+ABP2, ABP3+GHOST
    workers = start_workers(config, cycle_env.redis_url, n=2)
    app = cycle_env.use_broker(config)
    report = app.send_task("artq.cycle.dispatch", args=[cycle_env.t0.isoformat()]).get(timeout=60)
    assert (report["started"], report["batches"]) == (4, 2)
    again = app.send_task("artq.cycle.dispatch", args=[cycle_env.t0.isoformat()]).get(timeout=60)
    assert again["started"] == 0  # beat firing twice starts nothing
    runs = {}
    for name in names:
        runs[name] = cycle_env.wait_for_run_of(name, cycle_env.t0, workers=workers)
    for name in ("ABP", *CLONES):
        assert runs[name].status == "succeeded", (name, runs[name].error)
        assert runs[name].task_ids["fetch"] and runs[name].task_ids["refresh"] and len(runs[name].task_ids["predict"]) == 6
    assert runs["GHOST"].status == "failed" and runs["GHOST"].error.startswith("fetch: UnknownApplication")
    with cycle_env.db.session() as s:
        counts = dict(s.execute(sa.select(Forecast.application, sa.func.count()).where(Forecast.origin == cycle_env.t0)
                                .group_by(Forecast.application)).all())
        assert s.scalar(sa.select(sa.func.count()).select_from(PipelineRun)) == 4
    assert counts == {"ABP": 6, "ABP2": 6, "ABP3": 6}
