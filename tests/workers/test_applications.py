"""The application list lives in the database: running workers see an addition or a pause at the next cycle."""

from __future__ import annotations

import pytest

from artq.pipeline import applications as apps
from artq.timeutil import HOUR
from tests.workers.test_fleet import CLONES, make_fleet

pytestmark = pytest.mark.integration


def test_an_application_added_while_workers_run_is_forecast_and_a_paused_one_is_not(cycle_env, start_workers):
    make_fleet(cycle_env)  # ABP2/ABP3: history and models in place, but only ABP is in the workers' config
    declared = cycle_env.settings.applications
    cycle_env.settings.applications = declared[:1]
    config = cycle_env.write_config()
    workers = start_workers(config, cycle_env.redis_url, n=2)
    app = cycle_env.use_broker(config)
    t0 = cycle_env.t0

    first = app.send_task("artq.cycle.dispatch", args=[(t0 - HOUR).isoformat()]).get(timeout=60)
    assert first["started"] == 1  # ABP only
    cycle_env.wait_for_run_of("ABP", t0 - HOUR, workers=workers)

    with cycle_env.db.session() as s:  # while the workers run: `artq apps add ABP2 ...`, `artq apps pause ABP`
        apps.add(s, "ABP2", declared[1].tiers)
        apps.set_status(s, "ABP", apps.AppStatus.PAUSED)
    second = app.send_task("artq.cycle.dispatch", args=[t0.isoformat()]).get(timeout=60)
    assert second["started"] == 1
    run = cycle_env.wait_for_run_of("ABP2", t0, workers=workers)
    assert run.status == "succeeded", run.error
    assert cycle_env.run(t0, "ABP") is None  # paused: not forecast
    assert "ABP3" in CLONES and cycle_env.run(t0, "ABP3") is None  # never added
