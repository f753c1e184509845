"""The cycle on real workers under faults: a failing horizon, duplicate triggers, a long task, a lost
callback, the database gone during the refresh, Redis restarted mid-cycle."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from artq.storage.models import DashboardLatestForecast, PipelineRun
from artq.timeutil import HOUR
from tests.conftest import ROOT
from tests.workers.conftest import FAULTS
from tests.workers.outages import TcpProxy, restart_redis, start_redis

pytestmark = pytest.mark.integration


def test_a_horizon_raising_leaves_the_other_five_and_the_run_names_it(cycle_env, start_workers):
    config = cycle_env.write_config()
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(fail_horizon=3), include=FAULTS)
    cycle_env.use_broker(config)
    cycle_env.trigger(cycle_env.t0)
    run = cycle_env.wait_for_run(cycle_env.t0, workers=workers)
    assert cycle_env.forecasts(cycle_env.t0) == [1, 2, 4, 5, 6]
    assert run.status == "partial"
    assert run.error == "h3: RuntimeError: injected fault in horizon 3"
    assert run.details["horizons_ok"] == [1, 2, 4, 5, 6]
    assert set(run.task_ids["predict"]) == {"1", "2", "3", "4", "5", "6"} and run.task_ids["refresh"]
    assert cycle_env.count(DashboardLatestForecast) == 5


def test_two_triggers_at_once_give_one_set_of_forecasts(cycle_env, start_workers):
    config = cycle_env.write_config()
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(predict_delay_s=0.5), include=FAULTS)
    cmd = [sys.executable, "-m", "artq", "run-cycle", "--app", "ABP", "--origin", cycle_env.t0.isoformat(), "--celery",
           "--timeout", "120", "--config", config]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 2], outs
    refused = next(err for code, _, err in outs if code == 2)
    assert "is running already" in refused and "ignored" in refused
    assert "6 of 6 horizons stored" in next(out for code, out, _ in outs if code == 0)

    # beat firing twice for the next origin: one dispatch starts the cycle, the other finds it in flight
    origin = cycle_env.t0 - HOUR
    app = cycle_env.use_broker(config)
    sent = [app.send_task("artq.cycle.dispatch", args=[origin.isoformat()]) for _ in range(2)]
    reports = [r.get(timeout=60) for r in sent]
    assert sorted(r["started"] for r in reports) == [0, 1], reports
    cycle_env.wait_for_run(origin, workers=workers)
    for t in (cycle_env.t0, origin):
        assert cycle_env.forecasts(t) == [1, 2, 3, 4, 5, 6]
        run = cycle_env.run(t)
        assert (run.status, run.attempts) == ("succeeded", 1)
    assert len(cycle_env.marks("predict", cycle_env.t0)) == 6  # the refused trigger ran nothing


def test_a_task_longer_than_the_visibility_timeout_runs_once(cycle_env, start_workers):
    config = cycle_env.write_config()  # visibility timeout 6 s, lease renewed every second
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(refresh_delay_s=10), include=FAULTS)
    cycle_env.use_broker(config)
    cycle_env.trigger(cycle_env.t0)
    run = cycle_env.wait_for_run(cycle_env.t0, workers=workers)
    assert run.status == "succeeded"
    assert len(cycle_env.marks("refresh", cycle_env.t0)) == 1
    assert len(cycle_env.marks("predict", cycle_env.t0)) == 6


def test_the_reconciler_on_beat_completes_a_cycle_whose_callback_was_lost(cycle_env, start_workers, start_beat):
    config = cycle_env.write_config(stuck_after_s=4, reconcile_every_s=2)
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(drop_refresh=1), include=FAULTS)
    cycle_env.use_broker(config)
    cycle_env.trigger(cycle_env.t0)
    cycle_env.wait_for_mark("refresh", cycle_env.t0)  # the callback ran and was dropped
    assert cycle_env.run(cycle_env.t0).status == "running"
    beat_log = start_beat(config)
    run = cycle_env.wait_for_run(cycle_env.t0, timeout_s=90, statuses=("succeeded",), workers=workers)
    assert run.details["reconciled"]["reason"] == "completed by the reconciler", beat_log.read_text()[-2000:]
    assert run.attempts == 1
    assert cycle_env.forecasts(cycle_env.t0) == [1, 2, 3, 4, 5, 6]
    assert cycle_env.count(DashboardLatestForecast) == 6


def test_mariadb_unreachable_during_the_refresh_delays_the_cycle_but_loses_nothing(cycle_env, start_workers):
    proxy = TcpProxy().start()
    try:
        via_proxy = cycle_env.db_url.replace("127.0.0.1:3306", f"127.0.0.1:{proxy.port}")
        assert via_proxy != cycle_env.db_url
        config = cycle_env.write_config(database_url=via_proxy)
        workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(refresh_delay_s=1),
                                include=FAULTS)
        cycle_env.use_broker(config)
        cycle_env.trigger(cycle_env.t0)
        cycle_env.wait_for_mark("refresh", cycle_env.t0)
        proxy.cut()
        time.sleep(8)
        assert cycle_env.run(cycle_env.t0).status == "running"
        proxy.restore()
        run = cycle_env.wait_for_run(cycle_env.t0, timeout_s=180, workers=workers)
    finally:
        proxy.close()
    logs = "".join(w.output() for w in workers)
    assert "StorageUnavailable" in logs and "Retry in" in logs  # it was retried, not failed
    assert (run.status, run.attempts, run.error) == ("succeeded", 1, None)
    assert cycle_env.forecasts(cycle_env.t0) == [1, 2, 3, 4, 5, 6]
    assert cycle_env.count(DashboardLatestForecast) == 6


def test_redis_restarted_during_a_cycle_the_cycle_completes_once(cycle_env, start_workers, start_beat):
    config = cycle_env.write_config(stuck_after_s=10, reconcile_every_s=3)
    workers = start_workers(config, cycle_env.redis_url, n=2, env=cycle_env.fault_env(predict_delay_s=1.5),
                            include=FAULTS)
    try:
        cycle_env.use_broker(config)
        start_beat(config)
        cycle_env.trigger(cycle_env.t0)
        cycle_env.wait_for_mark("predict", cycle_env.t0)
        restart_redis(down_s=1.0)  # queued horizons, the chord's state and the lock are gone
        run = cycle_env.wait_for_run(cycle_env.t0, timeout_s=150, statuses=("succeeded",), workers=workers)
    finally:
        start_redis()  # whatever happened, leave Redis running
    assert cycle_env.forecasts(cycle_env.t0) == [1, 2, 3, 4, 5, 6]
    assert cycle_env.count(DashboardLatestForecast) == 6
    assert cycle_env.count(PipelineRun, PipelineRun.origin == cycle_env.t0) == 1
    assert run.error is None
