"""On real workers: re-running older hours after the current one never rolls the dashboard back."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from artq.storage.models import DashboardForecastActual, DashboardLatestForecast
from artq.timeutil import HOUR

pytestmark = pytest.mark.integration


def test_rerunning_t_minus_1_and_t_minus_2_after_t_keeps_the_page_on_t(cycle_env, start_workers):
    config = cycle_env.write_config()
    workers = start_workers(config, cycle_env.redis_url, n=2)
    cycle_env.use_broker(config)
    t = cycle_env.t0
    for origin in (t, t - HOUR, t - 2 * HOUR):  # the current hour first, then the recovery re-runs of older ones
        cycle_env.trigger(origin)
        assert cycle_env.wait_for_run(origin, workers=workers).status == "succeeded"
    with cycle_env.db.session() as s:
        shown = {row.origin for row in s.scalars(select(DashboardLatestForecast).where(
            DashboardLatestForecast.application == "ABP"))}
        history = {row.origin for row in s.scalars(select(DashboardForecastActual))}
    assert shown == {t}  # still the newest origin, six rows of it
    assert cycle_env.count(DashboardLatestForecast) == 6
    assert {t, t - HOUR, t - 2 * HOUR} <= history  # the older origins updated their history rows
