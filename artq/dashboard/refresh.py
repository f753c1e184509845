"""Refresh of the dashboard tables for one application after a cycle (idempotent).

Called by the chord callback (``artq.pipeline.cycle.refresh_step``) inside one database session.
Every table is keyed so that re-running the refresh of the same (application, origin) rewrites
the same rows; the tables are documented column by column in ``docs/dashboard-tables.md``.

The "current" tables (latest forecast, percentile bands, drivers, accuracy, the early-warning
alert) only move forward in time: refreshing an older origin (a recovery re-run of a past hour,
a reconciler re-run of the previous hour after the current one) updates that origin's history
rows in ``dashboard_forecast_actual`` and nothing that claims to be current.

Order matters: the alert evaluation needs the percentile bands (relative thresholds) and the
active-alert snapshot needs the alert rows. Webhook notifications go out only after the caller
commits (see ``artq.dashboard.notify``), never from inside this transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from artq.config import Settings
from artq.dashboard.alerts import Point, evaluate_alerts, rule_for
from artq.dashboard.bands import HISTORY_DAYS, PERIODS, BandSet, load_actual_art
from artq.dashboard.labels import label_drivers
from artq.dashboard.notify import notify_after_commit
from artq.horizons import HORIZONS, N_HORIZONS, RECENT_HOURS
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
    ModelVersion,
)
from artq.timeutil import HOUR, as_utc, utcnow

LATE_ACTUAL_HOURS = RECENT_HOURS + N_HORIZONS  # late data is asked for again up to 48 h back; targets run 6 h ahead
ACCURACY_PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
TOP_DRIVERS = 5


def shown_origin(session: Session, application: str) -> datetime | None:
    """The origin of the forecast the dashboard shows as current (None before the first one)."""
    t = session.scalar(select(func.max(DashboardLatestForecast.origin)).where(DashboardLatestForecast.application == application))
    return None if t is None else as_utc(t)


def refresh_dashboard(session: Session, settings: Settings, application: str, origin: datetime) -> dict[str, Any]:
    now = utcnow()
    origin = as_utc(origin)
    latest = repo.forecasts_for(session, application, origin)
    shown = shown_origin(session, application)
    nominal = _refresh_forecast_actual(session, application, origin, now)
    session.flush()
    if not latest or (shown is not None and origin < shown):
        # an older origin (or one with no forecast): its history rows are updated above; the current
        # tables keep the newer forecast. Accuracy is recomputed as of the shown origin, since the
        # re-run may have brought actuals the shown accuracy had not seen yet.
        accuracy = _refresh_accuracy(session, application, shown, nominal, now) if shown is not None else 0
        active = _refresh_active_alerts(session, application, now)
        return {"latest_rows": 0, "accuracy_rows": accuracy, "band_rows": 0, "driver_rows": 0,
                "alert": {"action": "none", "reason": "older than the shown origin" if latest else "no forecast"},
                "webhook_scheduled": False, "active_alerts": active, "current": False,
                "shown_origin": None if shown is None else shown.isoformat()}
    session.execute(delete(DashboardLatestForecast).where(DashboardLatestForecast.application == application))
    session.execute(DashboardLatestForecast.__table__.insert(), [
        dict(application=application, horizon=f.horizon, origin=origin, target_hour=as_utc(f.target_hour), value=f.value,
             lower=f.lower, upper=f.upper, model_version=f.model_version, updated_at=now)
        for f in latest
    ])
    accuracy = _refresh_accuracy(session, application, origin, nominal, now)

    history = load_actual_art(session, application, origin - timedelta(days=HISTORY_DAYS), origin)
    rule = rule_for(settings, application)
    tiers = repo.application_tiers(session, application) or next(  # the table every worker reads, or its seed
        (list(a.tiers) for a in settings.applications if a.name == application), [])
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
    # replaced, not upserted: a partial cycle must not leave an older origin's horizons behind
    session.execute(delete(DashboardPercentileBand).where(DashboardPercentileBand.application == application))
    session.execute(DashboardPercentileBand.__table__.insert(), band_rows)
    drivers = _refresh_drivers(session, application, origin, latest, tiers, now)

    actual = history.get(origin)
    actual_threshold = rule.threshold(band_set.for_hour(origin))
    alert = evaluate_alerts(session, settings, application, origin, points, actual, actual_threshold, now)
    fresh = resolve_freshness(session, application, origin, len(latest), settings.forecast.horizons, now)
    active = _refresh_active_alerts(session, application, now)
    notify = notify_after_commit(session, settings, application, now)
    return {
        "latest_rows": len(latest), "accuracy_rows": accuracy,
        "band_rows": len(band_rows), "driver_rows": drivers, "alert": alert, "webhook_scheduled": notify,
        "active_alerts": active, "current": True, "freshness_resolved": fresh,
    }


def resolve_freshness(session: Session, application: str, origin: datetime, horizons_stored: int, horizons: int,
                      now: datetime) -> list[str]:
    """Resolve the open freshness alerts of hours up to ``origin`` once its cycle forecast every horizon.

    The reconciler opens a freshness alert for an hour with no completed cycle; a cycle for that
    hour (or a later one) that succeeded is what makes the dashboard current again.
    """
    if horizons_stored < horizons:
        return []
    keys = []
    for alert in session.scalars(select(Alert).where(Alert.application == application, Alert.kind == "freshness",
                                                     Alert.status == "open")):
        if alert.origin is None or as_utc(alert.origin) <= origin:
            alert.status, alert.resolved_at = "resolved", now
            keys.append(alert.key)
    if keys:
        session.flush()
    return keys


def training_windows(session: Session, application: str) -> dict[str, tuple[datetime, datetime]]:
    """(training_start, training_end) of every registered model version of ``application``."""
    rows = session.execute(select(ModelVersion.version, ModelVersion.training_start, ModelVersion.training_end)
                           .where(ModelVersion.application == application)).all()
    return {v: (as_utc(a), as_utc(b)) for v, a, b in rows if a is not None and b is not None}


def in_sample(windows: dict[str, tuple[datetime, datetime]], model_version: str | None, target_hour: datetime) -> bool:
    """True when the model that made a forecast was trained on the actual of its target hour."""
    window = windows.get(model_version or "")
    return window is not None and window[0] <= as_utc(target_hour) <= window[1]


def _refresh_forecast_actual(session: Session, application: str, origin: datetime, now: datetime) -> float | None:
    """Forecast against actual for target hours whose actual may still arrive or change.

    Only the last ``LATE_ACTUAL_HOURS`` of target hours can change (ingest asks the source again
    for hours it had no data for, up to 48 h back), and only rows that differ are written: a fleet
    refresh then writes a handful of rows per application instead of two weeks of them.
    Returns the nominal coverage of those forecasts (for the accuracy table).
    """
    since = origin - timedelta(hours=LATE_ACTUAL_HOURS)
    recent = list(session.scalars(
        select(Forecast).where(Forecast.application == application, Forecast.target_hour > since, Forecast.origin <= origin,
                               *repo.origin_bounds(Forecast.origin, since, origin + N_HORIZONS * HOUR))
    ))
    actual = repo.actuals(session, application, [as_utc(f.target_hour) for f in recent])
    stored = {
        (as_utc(r.origin), r.horizon): (r.forecast, r.lower, r.upper, r.actual)
        for r in session.scalars(select(DashboardForecastActual).where(
            DashboardForecastActual.application == application, DashboardForecastActual.target_hour > since,
            *repo.origin_bounds(DashboardForecastActual.origin, since, origin + N_HORIZONS * HOUR)))
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
        select(DashboardForecastActual.origin, DashboardForecastActual.horizon, DashboardForecastActual.target_hour,
               DashboardForecastActual.forecast, DashboardForecastActual.actual, DashboardForecastActual.inside_interval).where(
            DashboardForecastActual.application == application,
            DashboardForecastActual.target_hour > origin - longest,
            DashboardForecastActual.target_hour <= origin,
            *repo.origin_bounds(DashboardForecastActual.origin, origin - longest, origin),
            DashboardForecastActual.actual.is_not(None),
        )
    ).all()
    # forecasts of hours the model was trained on measure memory, not accuracy: left out
    windows = training_windows(session, application)
    if windows:
        versions = dict(((as_utc(o), h), v) for o, h, v in session.execute(
            select(Forecast.origin, Forecast.horizon, Forecast.model_version).where(
                Forecast.application == application, Forecast.target_hour > origin - longest, Forecast.target_hour <= origin,
                *repo.origin_bounds(Forecast.origin, origin - longest, origin))))
        pairs = [p for p in pairs if not in_sample(windows, versions.get((as_utc(p.origin), p.horizon)), p.target_hour)]
    rows = []
    for period, span in ACCURACY_PERIODS.items():
        for h in HORIZONS:
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
