from __future__ import annotations

import pytest
from sqlalchemy import func, select

from artq.storage.db import Database
from artq.storage.models import (
    DashboardAccuracy,
    DashboardActiveAlert,
    DashboardForecastActual,
    DashboardForecastDriver,
    DashboardLatestForecast,
    DashboardPercentileBand,
)
from tests.conftest import make_settings
from tests.dashboard.conftest import HOUR, T0, put_forecasts, refresh, seed_actuals

TABLES = (DashboardLatestForecast, DashboardForecastActual, DashboardAccuracy, DashboardPercentileBand,
          DashboardForecastDriver, DashboardActiveAlert)


def _actual(t):
    # 200 ms at night, 400 ms in the working day: gives distinct hour-of-week bands
    return 400.0 if 8 <= t.hour < 18 else 200.0


@pytest.fixture
def filled(any_db_url, tmp_path):
    settings = make_settings(tmp_path, database_url=any_db_url)
    settings.alerts.threshold_ms = 600.0
    db = Database(any_db_url)
    seed_actuals(db, "ABP", T0 - 35 * 24 * HOUR, T0, _actual)
    # forecasts of the last 2 days, each 10 ms above the actual: MAE 10, always inside ±40
    for k in range(48, 0, -1):
        origin = T0 - k * HOUR
        put_forecasts(db, "ABP", origin, [_actual(origin + h * HOUR) + 10 for h in range(1, 7)])
    put_forecasts(db, "ABP", T0, [380, 420, 450, 700, 500, 400],
                  drivers=[["ABPServer3 load", 41.2], ["calendar", -5.5], ["ABPServer1 errors", 2.0]])
    yield settings, db
    db.dispose()


def counts(db):
    with db.session() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) for t in TABLES}


def test_refresh_fills_every_dashboard_table_and_a_rerun_changes_nothing(filled):
    settings, db = filled
    out = refresh(db, settings, "ABP", T0)
    first = counts(db)
    assert first == {
        "dashboard_latest_forecast": 6, "dashboard_forecast_actual": 49 * 6, "dashboard_accuracy": 12,
        "dashboard_percentile_bands": 18, "dashboard_forecast_drivers": 18, "dashboard_active_alerts": 1,
    }
    assert out["alert"]["action"] == "open" and out["band_rows"] == 18
    refresh(db, settings, "ABP", T0)
    assert counts(db) == first


def test_accuracy_per_horizon_over_24h_and_7d(filled):
    settings, db = filled
    refresh(db, settings, "ABP", T0)
    with db.session() as s:
        rows = {(r.period, r.horizon): r for r in s.scalars(select(DashboardAccuracy))}
    day = rows[("24h", 1)]
    assert (day.n, day.mae, day.bias, day.coverage, day.nominal_coverage) == (24, 10.0, 10.0, 1.0, 0.8)
    assert rows[("24h", 6)].n == 24 and rows[("7d", 6)].n == 48 - 5  # forecasts made 48 h back, targets up to T0
    assert day.mape == pytest.approx((14 * 10 / 200 + 10 * 10 / 400) / 24, abs=1e-4)  # 14 night, 10 day hours


def test_percentile_bands_join_the_next_six_forecasts(filled):
    settings, db = filled
    refresh(db, settings, "ABP", T0)
    with db.session() as s:
        rows = {(r.period, r.horizon): r for r in s.scalars(select(DashboardPercentileBand))}
    week = rows[("7d", 4)]
    assert week.n_hours == 7 * 24 and week.p60 == 400.0 and week.p99 == 400.0 and week.p75 == 400.0
    assert week.forecast == 700 and week.band_position == ">p99" and week.alert_threshold == 600.0
    how = rows[("hour_of_week", 1)]  # Monday 10:00: the 5 earlier Mondays in 35 days of history
    assert how.n_hours == 5 and how.p60 == 400.0
    night = rows[("hour_of_week", 6)]
    assert night.target_hour == T0 + 6 * HOUR and night.p99 == 400.0  # 15:00 is still the working day
    assert rows[("30d", 2)].n_hours == 30 * 24
    assert rows[("30d", 1)].band_position == "<p60"  # 380 ms under a p60 of 400 ms


def test_drivers_are_ranked_per_horizon_with_direction(filled):
    settings, db = filled
    refresh(db, settings, "ABP", T0)
    with db.session() as s:
        rows = s.scalars(select(DashboardForecastDriver).where(DashboardForecastDriver.horizon == 4)
                         .order_by(DashboardForecastDriver.driver_rank)).all()
    assert [(r.driver_rank, r.driver, r.direction) for r in rows] == [
        (1, "ABPServer3 load", "up"), (2, "calendar", "down"), (3, "ABPServer1 errors", "up")]


def test_driver_slugs_are_shown_with_the_configured_tier_names():
    from artq.dashboard.labels import driver_label

    tiers = ["ABPServer3", "CollectionServer"]
    assert driver_label("abpserver3 load", tiers) == "ABPServer3 load"
    assert driver_label("collectionserver response time", tiers) == "CollectionServer response time"
    assert driver_label("ART history", tiers) == "ART history"
    assert driver_label("main slow calls", tiers) == "main slow calls"
