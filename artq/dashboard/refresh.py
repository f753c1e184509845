"""Refresh of the dashboard tables for one application after a cycle (idempotent).

Called by the chord callback (``artq.pipeline.steps.refresh_step``) inside one database session.
Every table is keyed so that re-running the refresh of the same (application, origin) rewrites
the same rows; the tables are documented column by column in ``docs/dashboard-tables.md``.

Order matters: the alert evaluation needs the percentile bands (relative thresholds) and the
active-alert snapshot needs the alert rows. Webhook notifications go out only after the caller
commits (see ``artq.dashboard.notify``), never from inside this transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from artq.config import Settings
from artq.dashboard.alerts import Point, evaluate_alerts, rule_for
from artq.dashboard.bands import HISTORY_DAYS, PERIODS, BandSet, load_actual_art
from artq.dashboard.labels import label_drivers
from artq.dashboard.notify import notify_after_commit
from artq.storage import repository as repo
from artq.storage.db import upsert
from artq.storage.models import (
    Alert,
    DashboardAccuracy,
    DashboardActiveAlert,
    DashboardForecastActual,
    DashboardForecastDriver,
    DashboardLatestForecast,
    DashboardPercentileBand,
    Forecast,
)
from artq.timeutil import as_utc, utcnow

LATE_ACTUAL_HOURS = 48 + 6  # late data is asked for again up to 48 h back; targets run 6 h ahead
ACCURACY_PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
TOP_DRIVERS = 5


def refresh_dashboard(session: Session, settings: Settings, application: str, origin: datetime) -> dict[str, Any]:
    now = utcnow()
    origin = as_utc(origin)
    latest = repo.forecasts_for(session, application, origin)
    upsert(
        session,
        DashboardLatestForecast.__table__,
        [
            dict(application=application, horizon=f.horizon, origin=origin, target_hour=as_utc(f.target_hour), value=f.value,
                 lower=f.lower, upper=f.upper, model_version=f.model_version, updated_at=now)
            for f in latest
        ],
        keys=("application", "horizon"),
    )
    nominal = _refresh_forecast_actual(session, application, origin, now)
    session.flush()
    accuracy = _refresh_accuracy(session, application, origin, nominal, now)

    history = load_actual_art(session, application, origin - timedelta(days=HISTORY_DAYS), origin)
    rule = rule_for(settings, application)
    tiers = settings.application(application).tiers
    band_set = BandSet(history, origin)
    points = []
    band_rows = []
    for f in latest:
        target = as_utc(f.target_hour)
        bands = band_set.for_hour(target)
        threshold = rule.threshold(bands)
        points.append(Point(f.horizon, target, f.value, f.upper, threshold, label_drivers(f.drivers, tiers)))
        for period in PERIODS:
            b = bands[period]
            band_rows.append(dict(
                application=application, horizon=f.horizon, period=period, origin=origin, target_hour=target,
                forecast=f.value, lower=f.lower, upper=f.upper, n_hours=b.n_hours, p60=b.p60, p75=b.p75, p90=b.p90,
                p99=b.p99, band_position=b.position(f.value), alert_threshold=threshold, updated_at=now,
            ))
    upsert(session, DashboardPercentileBand.__table__, band_rows, keys=("application", "horizon", "period"))
    drivers = _refresh_drivers(session, application, origin, latest, tiers, now)

    actual = history.get(origin)
    actual_threshold = rule.threshold(band_set.for_hour(origin))
    alert = evaluate_alerts(session, settings, application, origin, points, actual, actual_threshold, now)
    active = _refresh_active_alerts(session, application, now)
    notify = notify_after_commit(session, settings, application, now)
    return {
        "latest_rows": len(latest), "accuracy_rows": accuracy,
        "band_rows": len(band_rows), "driver_rows": drivers, "alert": alert, "webhook_scheduled": notify,
        "active_alerts": active,
    }


def _refresh_forecast_actual(session: Session, application: str, origin: datetime, now: datetime) -> float | None:
    """Forecast against actual for target hours whose actual may still arrive or change.

    Only the last ``LATE_ACTUAL_HOURS`` of target hours can change (ingest asks the source again
    for hours it had no data for, up to 48 h back), and only rows that differ are written: a fleet
    refresh then writes a handful of rows per application instead of two weeks of them.
    Returns the nominal coverage of those forecasts (for the accuracy table).
    """
    since = origin - timedelta(hours=LATE_ACTUAL_HOURS)
    recent = list(session.scalars(
        select(Forecast).where(Forecast.application == application, Forecast.target_hour > since, Forecast.origin <= origin)
    ))
    actual = repo.actuals(session, application, [as_utc(f.target_hour) for f in recent])
    stored = {
        (as_utc(r.origin), r.horizon): (r.forecast, r.lower, r.upper, r.actual)
        for r in session.scalars(select(DashboardForecastActual).where(
            DashboardForecastActual.application == application, DashboardForecastActual.target_hour > since))
    }
    rows = []
    for f in recent:
        a = actual.get(as_utc(f.target_hour))
        if stored.get((as_utc(f.origin), f.horizon)) == (f.value, f.lower, f.upper, a):
            continue
        inside = None if a is None or f.lower is None or f.upper is None else bool(f.lower <= a <= f.upper)
        rows.append(
            dict(application=application, origin=as_utc(f.origin), horizon=f.horizon, target_hour=as_utc(f.target_hour),
                 forecast=f.value, lower=f.lower, upper=f.upper, actual=a,
                 abs_error=None if a is None else abs(a - f.value), inside_interval=inside, updated_at=now)
        )
    upsert(session, DashboardForecastActual.__table__, rows, keys=("application", "origin", "horizon"))
    return _mean([f.coverage for f in recent if f.coverage is not None])


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _refresh_accuracy(session: Session, application: str, origin: datetime, nominal: float | None, now: datetime) -> int:
    """MAE, MAPE, bias and interval coverage per horizon over target hours in (origin - period, origin]."""
    longest = max(ACCURACY_PERIODS.values())
    pairs = session.execute(
        select(DashboardForecastActual.horizon, DashboardForecastActual.target_hour, DashboardForecastActual.forecast,
               DashboardForecastActual.actual, DashboardForecastActual.inside_interval).where(
            DashboardForecastActual.application == application,
            DashboardForecastActual.target_hour > origin - longest,
            DashboardForecastActual.target_hour <= origin,
            DashboardForecastActual.actual.is_not(None),
        )
    ).all()
    rows = []
    for period, span in ACCURACY_PERIODS.items():
        for h in range(1, 7):
            sel = [p for p in pairs if p.horizon == h and as_utc(p.target_hour) > origin - span]
            errors = [p.forecast - p.actual for p in sel]
            inside = [p.inside_interval for p in sel if p.inside_interval is not None]
            rows.append(dict(
                application=application, period=period, horizon=h, as_of=origin, n=len(sel),
                mae=_mean([abs(e) for e in errors]),
                mape=_mean([abs(p.forecast - p.actual) / p.actual for p in sel if p.actual > 0]),
                bias=_mean(errors), n_interval=len(inside), coverage=_mean([float(i) for i in inside]),
                nominal_coverage=nominal if sel else None, updated_at=now,
            ))
    upsert(session, DashboardAccuracy.__table__, rows, keys=("application", "period", "horizon"))
    return len(rows)


def _refresh_drivers(session: Session, application: str, origin: datetime, latest: list[Forecast], tiers: list[str],
                     now: datetime) -> int:
    """Replace the application's driver rows with those of the latest forecast (counts vary per horizon)."""
    if not latest:
        return 0
    session.execute(delete(DashboardForecastDriver).where(DashboardForecastDriver.application == application))
    rows = []
    for f in latest:
        for rank, item in enumerate(label_drivers(f.drivers, tiers)[:TOP_DRIVERS], start=1):
            name, contribution = str(item[0])[:255], float(item[1])
            rows.append(dict(application=application, horizon=f.horizon, driver_rank=rank, origin=origin,
                             target_hour=as_utc(f.target_hour), driver=name, contribution=round(contribution, 3),
                             direction="up" if contribution >= 0 else "down", updated_at=now))
    if rows:
        session.execute(DashboardForecastDriver.__table__.insert(), rows)
    return len(rows)


def _refresh_active_alerts(session: Session, application: str, now: datetime) -> int:
    """Snapshot the open alerts of the application (any kind); resolved ones disappear."""
    session.execute(delete(DashboardActiveAlert).where(DashboardActiveAlert.application == application))
    rows = []
    for a in session.scalars(select(Alert).where(Alert.application == application, Alert.status == "open")):
        peak = ((a.details or {}).get("latest") or {}).get("peak") or {}
        rows.append(dict(
            alert_key=a.key, application=application, kind=a.kind, severity=a.severity, opened_at=as_utc(a.opened_at),
            origin=None if a.origin is None else as_utc(a.origin), horizon=a.horizon,
            target_hour=None if a.target_hour is None else as_utc(a.target_hour), lead_hours=a.lead_hours,
            predicted=a.predicted, threshold=a.threshold, latest_peak=peak.get("compared"), message=a.message,
            notified=a.notified_at is not None, updated_at=now,
        ))
    if rows:
        session.execute(DashboardActiveAlert.__table__.insert(), rows)
    return len(rows)
