"""A whole worker SIGKILLed while the six horizon tasks run: the cycle still completes, once."""

from __future__ import annotations

import pytest

from artq.storage.models import DashboardLatestForecast
from artq.timeutil import HOUR
from tests.workers.conftest import FAULTS

pytestmark = pytest.mark.integration

ROUNDS = 5


def test_sigkill_of_a_whole_worker_during_the_horizons_loses_and_duplicates_nothing(cycle_env, start_workers):
    config = cycle_env.write_config()
    env = cycle_env.fault_env(predict_delay_s=1.2)
    survivor = start_workers(config, cycle_env.redis_url, n=1, env=env, include=FAULTS, prefix="survivor")[0]
    cycle_env.use_broker(config)
    victim = start_workers(config, cycle_env.redis_url, n=1, env=env, include=FAULTS, prefix="victim")[0]
    killed = []
    for i in range(ROUNDS):
        origin = cycle_env.t0 - i * HOUR
        cycle_env.trigger(origin)
        mark = cycle_env.wait_for_mark("predict", origin, host=victim.hostname)
        victim.kill()  # SIGKILL to the process group: the main worker process and its pool child
        killed.append(mark.split("-")[2])  # the horizon it was running, e.g. "h3"
        next_victim = start_workers(config, cycle_env.redis_url, n=1, env=env, include=FAULTS, prefix="victim")[0]
        run = cycle_env.wait_for_run(origin, timeout_s=90, workers=[survivor, next_victim])
        assert run.status == "succeeded", (run.status, run.error)
        assert cycle_env.forecasts(origin) == [1, 2, 3, 4, 5, 6]
        assert run.attempts == 1  # the broker redelivered the task; nobody re-ran the cycle
        redone = [m for m in cycle_env.marks("predict", origin) if f"-{killed[-1]}-" in m and victim.hostname not in m]
        assert redone, f"horizon {killed[-1]} killed on {victim.hostname} never ran again"
        victim = next_victim
    assert len(killed) == ROUNDS
    assert cycle_env.count(DashboardLatestForecast) == 6
