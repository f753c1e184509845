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
from artq.catalog import MAIN, TARGET_METRIC
from artq.dashboard.alerts import KIND as ALERT_KIND
from artq.dashboard.alerts import Point, evaluate_alerts, rule_for
from artq.dashboard.bands import HISTORY_DAYS, PERIODS, BandSet
from artq.dashboard.labels import label_drivers
from artq.dashboard.notify import notify_after_commit
from artq.horizons import HORIZONS, N_HORIZONS, RECENT_HOURS
from artq.storage import repository as repo
from artq.storage.models import (
    Alert,
    Application,
    DashboardAccuracy,
    DashboardActiveAlert,
    DashboardForecastActual,
    DashboardForecastDriver,
    DashboardLatestForecast,
    DashboardPercentileBand,
    Forecast,
    ModelVersion,
    Observation,
)
from artq.timeutil import HOUR, as_utc, utcnow

LATE_ACTUAL_HOURS = RECENT_HOURS + N_HORIZONS  # late data is asked for again up to 48 h back; targets run 6 h ahead
ACCURACY_PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}
TOP_DRIVERS = 5


def shown_origin(session: Session, application: str) -> datetime | None:
    """The origin of the forecast the dashboard shows as current (None before the first one)."""
    return shown_origins(session, [application]).get(application)


def shown_origins(session: Session, applications: Sequence[str]) -> dict[str, datetime]:
    rows = session.execute(select(DashboardLatestForecast.application, func.max(DashboardLatestForecast.origin))
                           .where(DashboardLatestForecast.application.in_(list(applications)))
                           .group_by(DashboardLatestForecast.application))
    return {a: as_utc(t) for a, t in rows if t is not None}


def refresh_dashboard(session: Session, settings: Settings, application: str, origin: datetime) -> dict[str, Any]:
    """Refresh the dashboard tables of one application after the cycle of ``origin`` (see the module doc)."""
    return refresh_dashboards(session, settings, [application], origin)[application]


def refresh_dashboards(session: Session, settings: Settings, applications: Sequence[str],
                       origin: datetime) -> dict[str, dict[str, Any]]:
    """:func:`refresh_dashboard` of a batch of applications in the caller's transaction.

    Each table is read and written once for the whole batch (about 20 statements instead of ~23
    per application); every application's rows are exactly those its own refresh would write,
    since every computation stays per application. Returns ``{application: summary}``.
    """
    now = utcnow()
    origin = as_utc(origin)
    names = list(dict.fromkeys(applications))
    if not names:
        return {}
    latest = _forecasts_at(session, names, origin)
    shown = shown_origins(session, names)
    nominal = _refresh_forecast_actual(session, names, origin, now)
    session.flush()
    current = [n for n in names if latest.get(n) and not (n in shown and origin < shown[n])]
    out: dict[str, dict[str, Any]] = {}
    # an older origin (or one with no forecast): its history rows are updated above; the current
    # tables keep the newer forecast. Accuracy is recomputed as of the shown origin, since the
    # re-run may have brought actuals the shown accuracy had not seen yet.
    older = [n for n in names if n not in set(current)]
    accuracy = _refresh_accuracy(session, {n: shown[n] for n in older if n in shown}, nominal, now)
    for n in older:
        out[n] = {"latest_rows": 0, "accuracy_rows": accuracy.get(n, 0), "band_rows": 0, "driver_rows": 0,
                  "alert": {"action": "none", "reason": "older than the shown origin" if latest.get(n) else "no forecast"},
                  "webhook_scheduled": False, "current": False,
                  "shown_origin": shown[n].isoformat() if n in shown else None}
    if current:
        out.update(_refresh_current(session, settings, current, {n: latest[n] for n in current}, origin, nominal, now))
    active = _refresh_active_alerts(session, names, now)
    for n in names:
        out[n]["active_alerts"] = active.get(n, 0)
    for n in current:  # after the alerts are written: the webhook goes out once the caller commits
        out[n]["webhook_scheduled"] = notify_after_commit(session, settings, n, now)
    return {n: _ordered(out[n]) for n in names}


_KEYS = ("latest_rows", "accuracy_rows", "band_rows", "driver_rows", "alert", "webhook_scheduled", "active_alerts",
         "current", "freshness_resolved", "shown_origin")


def _ordered(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in _KEYS if k in summary}


def _forecasts_at(session: Session, names: list[str], origin: datetime) -> dict[str, list[Forecast]]:
    out: dict[str, list[Forecast]] = {}
    for f in session.scalars(select(Forecast).where(Forecast.application.in_(names), Forecast.origin == origin)
                             .order_by(Forecast.application, Forecast.horizon)):
        out.setdefault(f.application, []).append(f)
    return out


def _refresh_current(session: Session, settings: Settings, names: list[str], latest: dict[str, list[Forecast]],
                     origin: datetime, nominal: dict[str, float | None], now: datetime) -> dict[str, dict[str, Any]]:
    """The tables that claim to be current, for applications whose forecast of ``origin`` is the newest."""
    session.execute(delete(DashboardLatestForecast).where(DashboardLatestForecast.application.in_(names)))
    session.execute(DashboardLatestForecast.__table__.insert(), [
        dict(application=n, horizon=f.horizon, origin=origin, target_hour=as_utc(f.target_hour), value=f.value,
             lower=f.lower, upper=f.upper, model_version=f.model_version, updated_at=now)
        for n in names for f in latest[n]
    ])
    accuracy = _refresh_accuracy(session, dict.fromkeys(names, origin), nominal, now)
    history = _actual_art(session, names, origin - timedelta(days=HISTORY_DAYS), origin)
    listed = dict(session.execute(select(Application.name, Application.tiers).where(Application.name.in_(names))).all())
    seeded = None
    band_rows, driver_rows, out = [], [], {}
    evaluate = []
    for n in names:
        rule = rule_for(settings, n)
        tiers = listed.get(n)
        if tiers is None:  # the table every worker reads, or its seed
            seeded = seeded if seeded is not None else {a.name: list(a.tiers) for a in settings.applications}
            tiers = seeded.get(n, [])
        tiers = list(tiers)
        band_set = BandSet(history.get(n, {}), origin)
        points = []
        for f in latest[n]:
            target = as_utc(f.target_hour)
            bands = band_set.for_hour(target)
            threshold = rule.threshold(bands)
            points.append(Point(f.horizon, target, f.value, f.upper, threshold, label_drivers(f.drivers, tiers)))
            for period in PERIODS:
                b = bands[period]
                band_rows.append(dict(
                    application=n, horizon=f.horizon, period=period, origin=origin, target_hour=target,
                    forecast=f.value, lower=f.lower, upper=f.upper, n_hours=b.n_hours, p60=b.p60, p75=b.p75, p90=b.p90,
                    p99=b.p99, band_position=b.position(f.value), alert_threshold=threshold, updated_at=now,
                ))
        mine = _driver_rows(n, origin, latest[n], tiers, now)
        driver_rows += mine
        actual = history.get(n, {}).get(origin)
        evaluate.append((n, rule, points, actual, rule.threshold(band_set.for_hour(origin))))
        out[n] = {"latest_rows": len(latest[n]), "accuracy_rows": accuracy.get(n, 0), "band_rows": len(points) * len(PERIODS),
                  "driver_rows": len(mine)}
    # replaced, not upserted: a partial cycle must not leave an older origin's horizons behind
    session.execute(delete(DashboardPercentileBand).where(DashboardPercentileBand.application.in_(names)))
    session.execute(DashboardPercentileBand.__table__.insert(), band_rows)
    session.execute(delete(DashboardForecastDriver).where(DashboardForecastDriver.application.in_(names)))
    if driver_rows:
        session.execute(DashboardForecastDriver.__table__.insert(), driver_rows)

    open_now = _open_breach_alerts(session, names)
    for n, rule, points, actual, actual_threshold in evaluate:
        if not rule.enabled:
            out[n]["alert"] = {"enabled": False, "action": "none"}
        elif n not in open_now and not any(p.crosses(rule.compare) for p in points):
            out[n]["alert"] = {"enabled": True, "action": "none"}  # what evaluate_alerts decides, without its query
        else:
            out[n]["alert"] = evaluate_alerts(session, settings, n, origin, points, actual, actual_threshold, now)
        out[n]["current"] = True
    fresh = resolve_freshness_many(session, {n: len(latest[n]) for n in names}, origin, settings.forecast.horizons, now)
    for n in names:
        out[n]["freshness_resolved"] = fresh.get(n, [])
    return out


def _open_breach_alerts(session: Session, names: list[str]) -> set[str]:
    """Applications with an open forecast-breach alert (the state :func:`evaluate_alerts` reads)."""
    return set(session.scalars(select(Alert.application).where(Alert.application.in_(names), Alert.kind == ALERT_KIND,
                                                               Alert.status == "open").distinct()))


def _actual_art(session: Session, names: list[str], start: datetime, end: datetime) -> dict[str, dict[datetime, float]]:
    """:func:`artq.dashboard.bands.load_actual_art` of many applications in one query."""
    out: dict[str, dict[datetime, float]] = {}
    for a, h, v in session.execute(select(Observation.application, Observation.hour, Observation.value).where(
            Observation.application.in_(names), Observation.server == MAIN, Observation.metric == TARGET_METRIC,
            Observation.hour >= start, Observation.hour <= end)):
        out.setdefault(a, {})[as_utc(h)] = float(v)
    return out


def resolve_freshness(session: Session, application: str, origin: datetime, horizons_stored: int, horizons: int,
                      now: datetime) -> list[str]:
    """Resolve the open freshness alerts of hours up to ``origin`` once its cycle forecast every horizon.

    The reconciler opens a freshness alert for an hour with no completed cycle; a cycle for that
    hour (or a later one) that succeeded is what makes the dashboard current again.
    """
    return resolve_freshness_many(session, {application: horizons_stored}, origin, horizons, now).get(application, [])


def resolve_freshness_many(session: Session, stored: dict[str, int], origin: datetime, horizons: int,
                           now: datetime) -> dict[str, list[str]]:
    """:func:`resolve_freshness` of many applications (``{application: horizons stored}``) in one query."""
    complete = [n for n, k in stored.items() if k >= horizons]
    out: dict[str, list[str]] = {}
    if not complete:
        return out
    for alert in session.scalars(select(Alert).where(Alert.application.in_(complete), Alert.kind == "freshness",
                                                     Alert.status == "open")):
        if alert.origin is None or as_utc(alert.origin) <= origin:
            alert.status, alert.resolved_at = "resolved", now
            out.setdefault(alert.application, []).append(alert.key)
    if out:
        session.flush()
    return out


def training_windows(session: Session, application: str) -> dict[str, tuple[datetime, datetime]]:
    """(training_start, training_end) of every registered model version of ``application``."""
    return training_windows_many(session, [application]).get(application, {})


def training_windows_many(session: Session, applications: Sequence[str]) -> dict[str, dict[str, tuple[datetime, datetime]]]:
    out: dict[str, dict[str, tuple[datetime, datetime]]] = {}
    rows = session.execute(select(ModelVersion.application, ModelVersion.version, ModelVersion.training_start,
                                  ModelVersion.training_end).where(ModelVersion.application.in_(list(applications))))
    for app, v, a, b in rows:
        if a is not None and b is not None:
            out.setdefault(app, {})[v] = (as_utc(a), as_utc(b))
    return out


def in_sample(windows: dict[str, tuple[datetime, datetime]], model_version: str | None, target_hour: datetime) -> bool:
    """True when the model that made a forecast was trained on the actual of its target hour."""
    window = windows.get(model_version or "")
    return window is not None and window[0] <= as_utc(target_hour) <= window[1]


def _refresh_forecast_actual(session: Session, names: list[str], origin: datetime, now: datetime) -> dict[str, float | None]:
    """Forecast against actual for target hours whose actual may still arrive or change.

    Only the last ``LATE_ACTUAL_HOURS`` of target hours can change (ingest asks the source again
    for hours it had no data for, up to 48 h back), and only rows that differ are written: a fleet
    refresh then writes a handful of rows per application instead of two weeks of them.
    Returns each application's nominal coverage of those forecasts (for the accuracy table).
    """
    since = origin - timedelta(hours=LATE_ACTUAL_HOURS)
    f, d = Forecast, DashboardForecastActual
    recent = session.execute(select(f.application, f.origin, f.horizon, f.target_hour, f.value, f.lower, f.upper,
                                    f.coverage).where(
        f.application.in_(names), f.target_hour > since, f.origin <= origin,
        *repo.origin_bounds(f.origin, since, origin + N_HORIZONS * HOUR))).all()
    targets = [as_utc(r.target_hour) for r in recent]
    actual: dict[tuple[str, datetime], float] = {}
    if targets:
        for a, h, v in session.execute(select(Observation.application, Observation.hour, Observation.value).where(
                Observation.application.in_(names), Observation.server == MAIN, Observation.metric == TARGET_METRIC,
                Observation.hour >= min(targets), Observation.hour <= max(targets))):
            actual[(a, as_utc(h))] = v
    stored = {
        (r.application, as_utc(r.origin), r.horizon): (r.forecast, r.lower, r.upper, r.actual)
        for r in session.execute(select(d.application, d.origin, d.horizon, d.forecast, d.lower, d.upper, d.actual).where(
            d.application.in_(names), d.target_hour > since,
            *repo.origin_bounds(d.origin, since, origin + N_HORIZONS * HOUR)))
    }
    rows, coverage = [], {}
    for r in recent:
        a = actual.get((r.application, as_utc(r.target_hour)))
        if r.coverage is not None:
            coverage.setdefault(r.application, []).append(r.coverage)
        if stored.get((r.application, as_utc(r.origin), r.horizon)) == (r.value, r.lower, r.upper, a):
            continue
        inside = None if a is None or r.lower is None or r.upper is None else bool(r.lower <= a <= r.upper)
        rows.append(
            dict(application=r.application, origin=as_utc(r.origin), horizon=r.horizon, target_hour=as_utc(r.target_hour),
                 forecast=r.value, lower=r.lower, upper=r.upper, actual=a,
                 abs_error=None if a is None else abs(a - r.value), inside_interval=inside, updated_at=now)
        )
    repo.upsert_many(session, d.__table__, rows, keys=("application", "origin", "horizon"))
    return {n: _mean(coverage.get(n, [])) for n in names}


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _refresh_accuracy(session: Session, as_of: dict[str, datetime], nominal: dict[str, float | None],
                      now: datetime) -> dict[str, int]:
    """MAE, MAPE, bias and interval coverage per horizon over target hours in (origin - period, origin].

    ``as_of`` gives each application its origin; one read per distinct origin (a fleet cycle: one).
    """
    longest = max(ACCURACY_PERIODS.values())
    d = DashboardForecastActual
    by_origin: dict[datetime, list[str]] = {}
    for n, t in as_of.items():
        by_origin.setdefault(t, []).append(n)
    rows, counts = [], {}
    for origin, names in by_origin.items():
        pairs: dict[str, list] = {}
        for p in session.execute(select(d.application, d.origin, d.horizon, d.target_hour, d.forecast, d.actual,
                                        d.inside_interval).where(
                d.application.in_(names), d.target_hour > origin - longest, d.target_hour <= origin,
                *repo.origin_bounds(d.origin, origin - longest, origin), d.actual.is_not(None))):
            pairs.setdefault(p.application, []).append(p)
        # forecasts of hours the model was trained on measure memory, not accuracy: left out
        windows = training_windows_many(session, names)
        trained = [n for n in names if windows.get(n)]
        versions: dict[tuple[str, datetime, int], str] = {}
        if trained:
            for a, o, h, v in session.execute(select(Forecast.application, Forecast.origin, Forecast.horizon,
                                                     Forecast.model_version).where(
                    Forecast.application.in_(trained), Forecast.target_hour > origin - longest,
                    Forecast.target_hour <= origin, *repo.origin_bounds(Forecast.origin, origin - longest, origin))):
                versions[(a, as_utc(o), h)] = v
        for n in names:
            mine = pairs.get(n, [])
            if windows.get(n):
                mine = [p for p in mine
                        if not in_sample(windows[n], versions.get((n, as_utc(p.origin), p.horizon)), p.target_hour)]
            for period, span in ACCURACY_PERIODS.items():
                for h in HORIZONS:
                    sel = [p for p in mine if p.horizon == h and as_utc(p.target_hour) > origin - span]
                    errors = [p.forecast - p.actual for p in sel]
                    inside = [p.inside_interval for p in sel if p.inside_interval is not None]
                    rows.append(dict(
                        application=n, period=period, horizon=h, as_of=origin, n=len(sel),
                        mae=_mean([abs(e) for e in errors]),
                        mape=_mean([abs(p.forecast - p.actual) / p.actual for p in sel if p.actual > 0]),
                        bias=_mean(errors), n_interval=len(inside), coverage=_mean([float(i) for i in inside]),
                        nominal_coverage=nominal.get(n) if sel else None, updated_at=now,
                    ))
            counts[n] = len(ACCURACY_PERIODS) * len(HORIZONS)
    repo.upsert_many(session, DashboardAccuracy.__table__, rows, keys=("application", "period", "horizon"))
    return counts


def _driver_rows(application: str, origin: datetime, latest: list[Forecast], tiers: list[str],
                 now: datetime) -> list[dict[str, Any]]:
    """The application's driver rows of the latest forecast (counts vary per horizon)."""
    rows = []
    for f in latest:
        for rank, item in enumerate(label_drivers(f.drivers, tiers)[:TOP_DRIVERS], start=1):
            name, contribution = str(item[0])[:255], float(item[1])
            rows.append(dict(application=application, horizon=f.horizon, driver_rank=rank, origin=origin,
                             target_hour=as_utc(f.target_hour), driver=name, contribution=round(contribution, 3),
                             direction="up" if contribution >= 0 else "down", updated_at=now))
    return rows


def _refresh_active_alerts(session: Session, names: list[str], now: datetime) -> dict[str, int]:
    """Snapshot the open alerts of the applications (any kind); resolved ones disappear."""
    session.execute(delete(DashboardActiveAlert).where(DashboardActiveAlert.application.in_(names)))
    rows, counts = [], {}
    for a in session.scalars(select(Alert).where(Alert.application.in_(names), Alert.status == "open")):
        peak = ((a.details or {}).get("latest") or {}).get("peak") or {}
        rows.append(dict(
            alert_key=a.key, application=a.application, kind=a.kind, severity=a.severity, opened_at=as_utc(a.opened_at),
            origin=None if a.origin is None else as_utc(a.origin), horizon=a.horizon,
            target_hour=None if a.target_hour is None else as_utc(a.target_hour), lead_hours=a.lead_hours,
            predicted=a.predicted, threshold=a.threshold, latest_peak=peak.get("compared"), message=a.message,
            notified=a.notified_at is not None, updated_at=now,
        ))
        counts[a.application] = counts.get(a.application, 0) + 1
    if rows:
        session.execute(DashboardActiveAlert.__table__.insert(), rows)
    return counts
