"""Queues by kind of work: a retrain running on its own worker never delays the hourly forecasts."""

from __future__ import annotations

import pytest

from tests.workers.conftest import FAULTS

pytestmark = pytest.mark.integration


def test_a_running_retrain_does_not_delay_the_cycle(cycle_env, start_workers):
    config = cycle_env.write_config()
    env = cycle_env.fault_env(train_sleep_s=25)
    trainer = start_workers(config, cycle_env.redis_url, n=1, queues="train", env=env, include=FAULTS, prefix="train")[0]
    cycler = start_workers(config, cycle_env.redis_url, n=1, queues="fetch,predict,refresh", env=env, include=FAULTS,
                           prefix="cycle")[0]
    app = cycle_env.use_broker(config)
    training = app.send_task("artq.model.train", args=["ABP"])  # routed to the train queue
    cycle_env.wait_for_mark("train", None)
    cycle_env.trigger(cycle_env.t0)
    run = cycle_env.wait_for_run(cycle_env.t0, workers=[trainer, cycler])
    assert run.status == "succeeded"
    assert training.state == "STARTED", "the cycle should finish while the retrain is still running"
    assert set(run.details["workers"].values()) == {cycler.hostname}
    assert training.get(timeout=60)["slept"] == 25
