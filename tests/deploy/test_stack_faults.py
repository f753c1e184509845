"""Faults across hosts, each container its own host, on the stack of ``make test-deploy``.

Each test injects one fault with Docker (SIGKILL, a network cut, a restart, a stop) at a moment
read from the containers' own logs, then checks the stored results in MariaDB: every horizon
exactly once. The figures (cycles run, forecasts lost, duplicated, re-run, seconds to recover)
go to ``Figures`` and, through scripts/test-deploy.sh, to the closing table of the run.
The last test stops the whole stack.
"""

from __future__ import annotations

import json
import re
import time

from tests.deploy.conftest import APP, LogWatch, origin_hours_ago, run, wait_done

HORIZONS = [1, 2, 3, 4, 5, 6]
PREDICT_RECEIVED = r"Task artq\.cycle\.predict\[[^\]]+\] received"


def _tally(stack, origin):
    """(stored horizons, lost, duplicated) for one origin, from the forecasts table."""
    horizons = [h for h, _ in stack.forecasts(origin)]
    lost = len(set(HORIZONS) - set(horizons))
    duplicated = len(horizons) - len(set(horizons))
    return horizons, lost, duplicated


def _settle(stack) -> None:
    """Every worker back and answering (a fault test leaves no missing replica to the next)."""
    for name in stack.containers("worker-predict"):
        if stack.inspect(name, "{{.State.Running}}") != "true":
            run(["docker", "start", name])
    stack.wait_workers(5, timeout=180)


def _held(watch: LogWatch, until: float) -> set[str]:
    """Predict task ids the container had received and not finished by ``until`` (its log)."""
    received, finished = set(), set()
    for t, line in list(watch.lines):
        m = re.search(r"Task artq\.cycle\.predict\[([^\]]+)\] (received|succeeded|failed|retry|raised)", line)
        if m and t <= until:
            (received if m.group(2) == "received" else finished).add(m.group(1))
    return received - finished


def test_sigkill_of_a_predict_container_mid_group_the_other_replica_completes_the_cycle(stack, figures, predict_logs):
    """Killed while it holds a horizon (a predict task takes a fraction of a second, so a kill
    that came too late is seen in the log and tried again on another hour, at most three times)."""
    victim, survivor = stack.containers("worker-predict")
    for attempt, origin in enumerate((origin_hours_ago(4), origin_hours_ago(11), origin_hours_ago(12))):
        _settle(stack)
        proc = stack.run_cycle(origin)
        predict_logs[victim].wait_for(PREDICT_RECEIVED, timeout=120)
        run(["docker", "kill", "-s", "KILL", victim])
        killed = time.monotonic()
        code, out = wait_done(proc, timeout=300)
        recovered = time.monotonic() - killed
        assert code == 0, out
        horizons, lost, duplicated = _tally(stack, origin)
        assert (horizons, lost, duplicated) == (HORIZONS, 0, 0)
        assert [s for s, *_ in stack.run_status(origin)] == ["succeeded"]
        held = _held(predict_logs[victim], until=time.monotonic())
        run(["docker", "start", victim])
        if held:
            break
        predict_logs[victim].close()  # its `docker logs -f` ended with the container
        predict_logs[victim] = LogWatch(victim)
    assert held, "three kills all came after the victim's horizon was done"
    runs = stack.predict_runs(predict_logs, origin)
    assert runs[survivor], "the surviving replica should have taken over the killed one's horizon"
    figures.record(fault="SIGKILL a predict container holding a horizon", cycles=attempt + 1, forecasts_lost=lost,
                   duplicated=duplicated, horizons_rerun=sum(map(len, runs.values())) - 6,
                   recover_s=round(recovered, 1))
    stack.wait_workers(5, timeout=180)


def test_network_cut_longer_than_the_lease_stores_each_horizon_once(stack, figures, predict_logs):
    """The cut worker holds a horizon; its lease lapses, the other replica runs it; the late
    write of the cut worker after reconnection changes nothing."""
    ops_lease_s = 20  # operations.visibility_timeout_s (default)
    victim, _ = stack.containers("worker-predict")
    for attempt, origin in enumerate((origin_hours_ago(5), origin_hours_ago(13), origin_hours_ago(14))):
        _settle(stack)
        proc = stack.run_cycle(origin)
        predict_logs[victim].wait_for(PREDICT_RECEIVED, timeout=120)
        run(["docker", "network", "disconnect", stack.network, victim])
        cut = time.monotonic()
        try:
            code, out = wait_done(proc, timeout=300)
            recovered = time.monotonic() - cut
            assert code == 0, out
            horizons, lost, duplicated = _tally(stack, origin)
            assert (horizons, lost, duplicated) == (HORIZONS, 0, 0)
            held = _held(predict_logs[victim], until=cut + 0.05)
            if held:
                time.sleep(max(0.0, ops_lease_s * 2 + 5 - (time.monotonic() - cut)))  # well over the lease
        finally:
            run(["docker", "network", "connect", stack.network, victim])
        if held:
            break
    assert held, "three cuts all came after the victim's horizon was done"
    cut_s = time.monotonic() - cut
    # the reconnected worker finishes or drops what it held; then count again
    stack.wait_workers(5, timeout=120)
    time.sleep(10)
    horizons, lost, duplicated = _tally(stack, origin)
    assert (horizons, lost, duplicated) == (HORIZONS, 0, 0)
    assert [s for s, *_ in stack.run_status(origin)] == ["succeeded"]
    runs = stack.predict_runs(predict_logs, origin)
    figures.record(fault=f"network cut of a predict container holding a horizon, {cut_s:.0f} s (lease {ops_lease_s} s)",
                   cycles=attempt + 1, forecasts_lost=lost, duplicated=duplicated,
                   horizons_rerun=sum(map(len, runs.values())) - 6, recover_s=round(recovered, 1))


def test_redis_restart_with_aof_keeps_queued_and_scheduled_cycles_and_nobody_restarts(stack, figures):
    _settle(stack)
    queued, scheduled = origin_hours_ago(6), origin_hours_ago(7)
    others = {name: stack.inspect(name, "{{.State.StartedAt}}")
              for service in ("beat", "worker-predict", "worker-refresh", "worker-train", "flower")
              for name in stack.containers(service)}
    beat = LogWatch(stack.container("beat"))
    try:
        stack.compose("stop", "worker-fetch")  # nobody consumes `fetch`: the cycles wait in Redis
        for origin, countdown in ((queued, 0), (scheduled, 30)):
            stack.exec("worker-refresh", "celery", "-A", "workers", "call", "artq.cycle.dispatch",
                       "--kwargs", json.dumps({"origin": origin.isoformat()}), "--countdown", str(countdown))
        queued_before = stack.redis().llen("fetch")  # the two, and any the reconciler sent meanwhile
        assert queued_before >= 2
        start = time.monotonic()
        stack.compose("restart", "redis", timeout=120)
        stack.wait_healthy(stack.container("redis"), timeout=60)
        assert stack.redis().llen("fetch") == queued_before, "queued cycles lost in the restart (append-only file)"
        stack.compose("start", "worker-fetch")
        stack.wait_healthy(stack.container("worker-fetch"), timeout=180)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(_tally(stack, o)[0] != HORIZONS for o in (queued, scheduled)):
            time.sleep(2)
        recovered = time.monotonic() - start
        for origin in (queued, scheduled):
            horizons, lost, duplicated = _tally(stack, origin)
            assert (horizons, lost, duplicated) == (HORIZONS, 0, 0), origin
        # beat sends again without a restart: the test stack's reconciler runs every 15 s
        beat.wait_for(r"Scheduler: Sending due task", timeout=60)
        for name, started in others.items():
            assert stack.inspect(name, "{{.State.StartedAt}}") == started, f"{name} was restarted"
        stack.wait_workers(5, timeout=60)
    finally:
        beat.close()
        stack.compose("start", "worker-fetch")
    figures.record(fault="restart Redis (append-only) with 1 queued + 1 scheduled cycle", cycles=2,
                   forecasts_lost=sum(_tally(stack, o)[1] for o in (queued, scheduled)),
                   duplicated=sum(_tally(stack, o)[2] for o in (queued, scheduled)), horizons_rerun=0,
                   recover_s=round(recovered, 1))


def _wait_run(stack, origin, timeout: float) -> str:
    """The stored status of ``origin``'s run once it is no longer running (MariaDB may be coming back)."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        rows = stack.run_status(origin)
        status = rows[0][0] if rows else None
        if status not in (None, "running"):
            return status
        time.sleep(2)
    raise AssertionError(f"the run of {origin} is still {status!r} after {timeout:.0f} s")


def _wait_horizons(stack, predict_logs, origin, count: int, timeout: float) -> None:
    """Until the predict replicas logged ``count`` horizons of ``origin`` done."""
    deadline = time.monotonic() + timeout
    while sum(map(len, stack.predict_runs(predict_logs, origin).values())) < count:
        assert time.monotonic() < deadline, f"{count} horizons of {origin} were not forecast within {timeout:.0f} s"
        time.sleep(0.02)


def test_mariadb_restart_mid_refresh_the_refresh_retries_and_nothing_is_half_written(stack, figures, predict_logs):
    """MariaDB is killed and restarted as the refresh begins (the refresh worker is paused from
    the fifth horizon until MariaDB is down, so the refresh cannot slip through first); a refresh
    that still got through is seen in the log and the fault tried again on another hour, at most
    three times."""
    _settle(stack)
    refresh = LogWatch(stack.container("worker-refresh"))
    mariadb = stack.container("mariadb")
    try:
        for attempt, origin in enumerate((origin_hours_ago(8), origin_hours_ago(9), origin_hours_ago(10))):
            proc = stack.run_cycle(origin)
            # The refresh worker is frozen from the fifth horizon on, so the chord's refresh (sent
            # when the sixth is stored) waits for it; MariaDB dies; the refresh starts into the
            # outage; then MariaDB starts again.
            worker = stack.container("worker-refresh")
            _wait_horizons(stack, predict_logs, origin, 5, timeout=120)
            run(["docker", "pause", worker])
            try:
                _wait_horizons(stack, predict_logs, origin, 6, timeout=60)
                run(["docker", "kill", "-s", "KILL", mariadb])
            finally:
                run(["docker", "unpause", worker])
            hit = time.monotonic()
            run(["docker", "start", mariadb])
            # The worker side is what is checked: the stored run. The waiting `run-cycle` client
            # reads the run table too and may give up while MariaDB is away; its exit is recorded.
            status = _wait_run(stack, origin, timeout=300)
            recovered = time.monotonic() - hit
            client_exit, client_out = wait_done(proc, timeout=120)
            retried = bool(refresh.matching(r"artq\.cycle\.refresh\[[^\]]+\] retry"))
            if retried or attempt == 2:
                break
            with refresh._cond:
                refresh.lines.clear()  # the refresh beat the restart: try again with another hour
        assert status == "succeeded", stack.run_status(origin)
        horizons, lost, duplicated = _tally(stack, origin)
        assert (horizons, lost, duplicated) == (HORIZONS, 0, 0)
        actual_rows = stack.sql("SELECT COUNT(*) FROM dashboard_forecast_actual WHERE application=%s AND origin=%s",
                                (APP, origin.replace(tzinfo=None)))[0][0]
        assert actual_rows == 6, "the dashboard's forecast-vs-actual rows of the cycle are half written"
        assert retried, "MariaDB went down three times without catching a refresh in flight"
    finally:
        refresh.close()
    client = "ok" if client_exit == 0 else f"exit {client_exit}: {client_out.strip().splitlines()[-1][:160]}"
    figures.record(fault="restart MariaDB (SIGKILL, start) mid-refresh", cycles=attempt + 1, forecasts_lost=lost,
                   duplicated=duplicated, horizons_rerun=0, recover_s=round(recovered, 1), run_cycle_client=client)


def test_stopping_the_stack_during_a_retrain_shuts_workers_down_warm(stack, figures):
    """Last: stops the stack. The retrain in flight completes; no worker is killed (exit 137)."""
    _settle(stack)
    # one more day of history: new training data, so the retrain really trains (an unchanged
    # one returns at once)
    stack.exec("worker-fetch", "artq", "backfill", "--app", APP, "--days", "32", timeout=600)
    train = LogWatch(stack.container("worker-train"))
    try:
        stack.exec("worker-train", "python", "-c", f"from workers.tasks import train; print(train.delay({APP!r}, tune=True).id)")
        train.wait_for(r"Task artq\.model\.train\[[^\]]+\] received", timeout=60)
        # into the training, but not past it: the idle worker starts the task at once, and this
        # retrain takes about 2 s on two free cores (a fixed 2 s wait let it finish first)
        time.sleep(0.3)
        start = time.monotonic()
        stack.compose("stop", timeout=900)
        stopped = time.monotonic() - start
        done = train.matching(r"Task artq\.model\.train\[[^\]]+\] succeeded")
        assert done, "the retrain did not finish before the worker stopped"
        assert "unchanged" not in done[0][1], "the retrain had nothing to train: the stop caught no training"
        warm = train.matching(r"[Ww]arm shutdown")
        assert warm and warm[0][0] < done[0][0], "the stop should have begun while the retrain ran"
    finally:
        train.close()
    codes = {}
    for service in ("worker-fetch", "worker-predict", "worker-refresh", "worker-train", "beat", "flower", "dashboard"):
        for name in stack.containers(service):
            codes[name] = int(stack.inspect(name, "{{.State.ExitCode}}"))
    killed = {n: c for n, c in codes.items() if n.split("-")[-2] in ("fetch", "predict", "refresh", "train") and c != 0}
    assert not killed, f"workers not shut down warm: {killed}"
    figures.record(fault="stop the stack during a retrain", cycles=0, forecasts_lost=0, duplicated=0,
                   horizons_rerun=0, recover_s=round(stopped, 1), exit_codes=codes)
