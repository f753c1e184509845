from __future__ import annotations

import pytest
from sqlalchemy import func, select

from artq.storage.db import Database
from artq.storage.models import (
    DashboardAccuracy,
    Forecast,
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
        (1, "ABPServer3 load", "up"), (2, "time of day and weekday", "down"), (3, "ABPServer1 errors", "up")]


def test_driver_slugs_are_shown_with_the_configured_tier_names():
    from artq.dashboard.labels import driver_label

    tiers = ["ABPServer3", "CollectionServer"]
    assert driver_label("abpserver3 load", tiers) == "ABPServer3 load"
    assert driver_label("collectionserver response time", tiers) == "CollectionServer response time"
    assert driver_label("ART history", tiers) == "recent response time (main server)"
    assert driver_label("calendar", tiers) == "time of day and weekday"
    assert driver_label("main slow calls", tiers) == "main server slow calls"


def _current(db):
    with db.session() as s:
        latest = {r.origin for r in s.scalars(select(DashboardLatestForecast))}
        bands = {r.origin for r in s.scalars(select(DashboardPercentileBand))}
        drivers = {r.origin for r in s.scalars(select(DashboardForecastDriver))}
        return latest, bands, drivers


def test_refreshing_older_origins_never_rolls_the_current_tables_back(filled):
    settings, db = filled
    refresh(db, settings, "ABP", T0)
    before = counts(db)
    with db.session() as s:
        accuracy = {(r.period, r.horizon): (r.as_of, r.n, r.mae) for r in s.scalars(select(DashboardAccuracy))}
    for k in (1, 2):
        out = refresh(db, settings, "ABP", T0 - k * HOUR)
        assert out["current"] is False and out["latest_rows"] == 0
    from artq.timeutil import as_utc

    latest, bands, drivers = _current(db)
    assert {as_utc(t) for t in latest | bands | drivers} == {T0}
    assert counts(db) == before
    with db.session() as s:
        again = {(r.period, r.horizon): (r.as_of, r.n, r.mae) for r in s.scalars(select(DashboardAccuracy))}
    assert {k: (as_utc(v[0]), *v[1:]) for k, v in again.items()} == {k: (as_utc(v[0]), *v[1:]) for k, v in accuracy.items()}


def test_a_partial_newer_cycle_replaces_every_current_row(filled):
    settings, db = filled
    refresh(db, settings, "ABP", T0)
    with db.session() as s:  # the next cycle forecast only horizons 1 and 2
        s.execute(Forecast.__table__.delete().where(Forecast.origin == T0 + HOUR, Forecast.horizon > 2))
    put_forecasts(db, "ABP", T0 + HOUR, [400, 410, 420, 430, 440, 450])
    with db.session() as s:
        s.execute(Forecast.__table__.delete().where(Forecast.origin == T0 + HOUR, Forecast.horizon > 2))
    refresh(db, settings, "ABP", T0 + HOUR)
    from artq.timeutil import as_utc

    latest, bands, drivers = _current(db)
    assert {as_utc(t) for t in latest | bands | drivers} == {T0 + HOUR}
    assert counts(db)["dashboard_latest_forecast"] == 2


def test_freshness_alert_resolves_when_a_cycle_of_its_hour_forecasts_every_horizon(filled):
    from artq.storage.models import Alert
    from artq.timeutil import utcnow

    settings, db = filled
    with db.session() as s:
        s.add(Alert(key="freshness:ABP:T0", application="ABP", kind="freshness", status="open", severity="warning",
                    opened_at=utcnow(), origin=T0, message="no completed cycle", notify_attempts=0))
    refresh(db, settings, "ABP", T0 - HOUR)  # an older hour does not make the dashboard current
    with db.session() as s:
        assert s.scalar(select(Alert.status).where(Alert.key == "freshness:ABP:T0")) == "open"
        assert s.scalar(select(func.count()).select_from(DashboardActiveAlert)
                        .where(DashboardActiveAlert.kind == "freshness")) == 1
    out = refresh(db, settings, "ABP", T0)
    assert out["freshness_resolved"] == ["freshness:ABP:T0"]
    with db.session() as s:
        assert s.scalar(select(Alert.status).where(Alert.key == "freshness:ABP:T0")) == "resolved"
        assert s.scalar(select(func.count()).select_from(DashboardActiveAlert)
                        .where(DashboardActiveAlert.kind == "freshness")) == 0


def test_in_sample_forecasts_are_kept_out_of_live_accuracy(filled):
    from artq.storage.models import ModelVersion

    settings, db = filled
    with db.session() as s:  # the forecasts' model was trained on everything up to T0 - 12 h
        s.add(ModelVersion(application="ABP", version="test-v1", status="champion", path="x", created_at=T0,
                           training_start=T0 - 30 * 24 * HOUR, training_end=T0 - 12 * HOUR, metrics={}))
    refresh(db, settings, "ABP", T0)
    with db.session() as s:
        day = s.scalar(select(DashboardAccuracy).where(DashboardAccuracy.period == "24h", DashboardAccuracy.horizon == 1))
    assert day.n == 12  # targets T0-11 h .. T0 only; the 12 earlier ones were training rows
