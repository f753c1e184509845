"""What the web dashboard shows, read from the dashboard tables (and the run and alert history).

Plain functions of a session returning JSON-ready dicts: the HTTP layer (``server.py``) only
routes and serialises, so these can be tested without a server. Times are ISO 8601 UTC strings.

Nothing here claims more than it knows: every view states the age of its data (``freshness``),
says when it is stale, labels validation errors as validation, and names each alert's kind.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from artq.catalog import MAIN, TARGET_METRIC
from artq.config import Settings
from artq.dashboard.alerts import KIND, rule_for
from artq.dashboard.bands import load_actual_art
from artq.dashboard.labels import label_drivers
from artq.dashboard.refresh import in_sample, training_windows
from artq.errors import ConfigError, InputError
from artq.horizons import HORIZONS
from artq.storage import repository as repo
from artq.storage.models import (
    Alert,
    DashboardAccuracy,
    DashboardActiveAlert,
    DashboardForecastActual,
    DashboardLatestForecast,
    DashboardPercentileBand,
    Forecast,
    ModelVersion,
    Observation,
    PipelineRun,
)
from artq.timeutil import HOUR, as_utc, last_complete_hour, utcnow

MAX_HOURS = 24 * 30
RUNS_SHOWN = 8
DONE = ("succeeded", "partial")
ALERT_KINDS = {  # what each kind of alert means, in the words the page uses
    KIND: "Breach expected",
    "freshness": "Forecasts stale",
    "drift": "Model drift",
}


def _iso(t: datetime | None) -> str | None:
    return None if t is None else as_utc(t).isoformat().replace("+00:00", "Z")


def _r(v: float | None, nd: int = 1) -> float | None:
    return None if v is None else round(float(v), nd)


def applications(session: Session, settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """The applications being forecast, with their latest cycle, freshness and open-alert count, for the picker."""
    now = now or utcnow()
    out = []
    names = repo.active_applications(session) or [a.name for a in settings.applications]  # empty before the first run
    for name in names:
        run = session.scalar(select(PipelineRun).where(PipelineRun.application == name)
                             .order_by(PipelineRun.origin.desc()).limit(1))
        open_alerts = session.scalars(select(DashboardActiveAlert.id).where(DashboardActiveAlert.application == name)).all()
        shown = session.scalar(select(DashboardLatestForecast.origin).where(DashboardLatestForecast.application == name)
                               .order_by(DashboardLatestForecast.origin.desc()).limit(1))
        fresh = freshness(session, settings, name, None if shown is None else as_utc(shown), now)
        out.append({"name": name, "last_origin": _iso(run.origin) if run else None,
                    "last_status": run.status if run else None, "open_alerts": len(open_alerts),
                    "stale": fresh["stale"], "age_minutes": fresh["age_minutes"]})
    return out


def expected_origin(settings: Settings, now: datetime) -> datetime:
    """The newest origin a healthy deployment has completed by ``now``.

    The cycle of the last complete hour has until ``operations.freshness_minute`` past the hour
    (the reconciler's deadline); before that, the hour before it is enough.
    """
    last = last_complete_hour(now)
    return last if now.minute >= settings.operations.freshness_minute else last - HOUR


def freshness(session: Session, settings: Settings, name: str, shown: datetime | None, now: datetime) -> dict[str, Any]:
    """How old the shown forecast is, and whether it is older than a healthy deployment's would be."""
    expected = expected_origin(settings, now)
    completed = session.scalar(select(PipelineRun.origin).where(PipelineRun.application == name, PipelineRun.status.in_(DONE))
                               .order_by(PipelineRun.origin.desc()).limit(1))
    # age: minutes since the data behind the forecast ends (the end of the origin hour)
    age = None if shown is None else max(0, int((now - (shown + HOUR)).total_seconds() // 60))
    behind = None if shown is None else max(0, int((expected - shown) / HOUR))
    stale = shown is None or shown < expected
    if shown is None:
        message = "no forecast yet: run a cycle (artq run-cycle, or artq serve to run one every hour)"
    elif stale:
        message = (f"the newest forecast is from the cycle of {shown:%Y-%m-%d %H:00} UTC, {behind} h behind the expected "
                   f"{expected:%H:00} UTC cycle; hours shown as ahead may already be past")
    else:
        message = f"current: the cycle of {shown:%Y-%m-%d %H:00} UTC"
    return {"now": _iso(now), "shown_origin": _iso(shown), "expected_origin": _iso(expected),
            "newest_completed_origin": _iso(completed), "age_minutes": age, "hours_behind": behind,
            "stale": stale, "message": message}


def application_view(session: Session, settings: Settings, name: str, hours: int = 72,
                     now: datetime | None = None) -> dict[str, Any]:
    """Everything the page shows for one application."""
    configured = {a.name: list(a.tiers) for a in settings.applications}  # the table's seed, before the first run
    tiers = repo.application_tiers(session, name) or configured.get(name)
    if tiers is None:
        raise ConfigError(f"unknown application {name!r}; see `artq apps list` (configured: "
                          f"{', '.join(sorted(configured)) or 'none'}).")
    if not 1 <= hours <= MAX_HOURS:
        raise InputError(f"`hours` must be in 1..{MAX_HOURS}. Got {hours}.")
    now = now or utcnow()
    latest = list(session.scalars(select(DashboardLatestForecast).where(DashboardLatestForecast.application == name)
                                  .order_by(DashboardLatestForecast.horizon)))
    origin = max((as_utc(f.origin) for f in latest), default=None)
    runs = list(session.scalars(select(PipelineRun).where(PipelineRun.application == name)
                                .order_by(PipelineRun.origin.desc()).limit(RUNS_SHOWN)))
    end = origin or (as_utc(runs[0].origin) if runs else None)
    actual = []
    if end is not None:
        # actuals newer than a stale forecast are shown too: the forecast then visibly lies in the past
        newest = session.scalar(select(func.max(Observation.hour)).where(
            Observation.application == name, Observation.server == MAIN, Observation.metric == TARGET_METRIC))
        last = max(end, as_utc(newest)) if newest is not None else end
        history = load_actual_art(session, name, last - timedelta(hours=hours - 1), last)
        actual = [[_iso(h), _r(v)] for h, v in sorted(history.items())]
    rule = rule_for(settings, name)
    return {
        "application": name,
        "origin": _iso(origin),
        "freshness": freshness(session, settings, name, origin, now),
        "rule": rule.describe() if rule.enabled else "alerts disabled",
        "compare": rule.compare,  # which value the page holds against the threshold: forecast | upper
        "actual": actual,
        "forecast": _forecast(session, name, latest, tiers),
        "past_forecast": _past_forecast(session, name, end, hours),
        "accuracy": _accuracy(session, name),
        "validation": _validation(session, name, latest),
        "in_sample": _in_sample(session, name, end),
        "alerts": _alerts(session, name),
        "runs": [_run(r) for r in runs],
    }


def _forecast(session: Session, name: str, latest: list[DashboardLatestForecast], tiers: list[str]) -> list[dict[str, Any]]:
    bands: dict[int, dict[str, Any]] = {}
    for b in session.scalars(select(DashboardPercentileBand).where(DashboardPercentileBand.application == name)):
        row = bands.setdefault(b.horizon, {"threshold": _r(b.alert_threshold), "bands": {}})
        row["bands"][b.period] = {"n_hours": b.n_hours, "p60": _r(b.p60), "p75": _r(b.p75), "p90": _r(b.p90),
                                  "p99": _r(b.p99), "position": b.band_position}
    drivers: dict[tuple[int, datetime], list] = {}
    if latest:
        # the drivers live with the forecast row itself; read them for exactly the displayed origin per horizon
        for f in session.scalars(select(Forecast).where(Forecast.application == name,
                                                        Forecast.origin.in_(sorted({as_utc(x.origin) for x in latest})))):
            drivers[(f.horizon, as_utc(f.origin))] = [[n, _r(c)] for n, c in label_drivers(f.drivers, tiers)[:3]]
    return [
        {"horizon": f.horizon, "origin": _iso(f.origin), "target_hour": _iso(f.target_hour), "value": _r(f.value),
         "lower": _r(f.lower), "upper": _r(f.upper), "model_version": f.model_version,
         "threshold": bands.get(f.horizon, {}).get("threshold"), "bands": bands.get(f.horizon, {}).get("bands", {}),
         "drivers": drivers.get((f.horizon, as_utc(f.origin)), [])}
        for f in latest
    ]


def _past_forecast(session: Session, name: str, end: datetime | None, hours: int) -> list[list[Any]]:
    """The one-hour-ahead forecasts of the window: how the model tracked the actuals."""
    if end is None:
        return []
    rows = session.scalars(select(DashboardForecastActual).where(
        DashboardForecastActual.application == name, DashboardForecastActual.horizon == 1,
        DashboardForecastActual.target_hour > end - timedelta(hours=hours), DashboardForecastActual.target_hour <= end,
        *repo.origin_bounds(DashboardForecastActual.origin, end - timedelta(hours=hours), end),
    ).order_by(DashboardForecastActual.target_hour))
    return [[_iso(r.target_hour), _r(r.forecast), _r(r.lower), _r(r.upper)] for r in rows]


def _accuracy(session: Session, name: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(DashboardAccuracy).where(DashboardAccuracy.application == name)
                           .order_by(DashboardAccuracy.horizon, DashboardAccuracy.period))
    return [{"period": r.period, "horizon": r.horizon, "n": r.n, "mae": _r(r.mae), "mape": _r(r.mape, 4),
             "bias": _r(r.bias), "coverage": _r(r.coverage, 3), "nominal_coverage": _r(r.nominal_coverage, 3)}
            for r in rows]


def _validation(session: Session, name: str, latest: list[DashboardLatestForecast]) -> dict[str, Any] | None:
    """Out-of-sample validation errors of the model behind the shown forecast (else the champion).

    Training holds out the last stretch of its window (time-ordered) and stores the errors there in
    ``model_versions.metrics``: MAE per horizon under ``horizons.<h>.mae`` and, when recorded,
    interval coverage under ``horizons.<h>.coverage`` (a share, 0..1) or a global ``coverage``.
    """
    versions = {f.model_version for f in latest}
    query = select(ModelVersion).where(ModelVersion.application == name)
    mv = None
    if versions:
        mv = session.scalar(query.where(ModelVersion.version.in_(sorted(versions))).order_by(ModelVersion.created_at.desc()).limit(1))
    if mv is None:
        mv = session.scalar(query.where(ModelVersion.status == "champion").order_by(ModelVersion.created_at.desc()).limit(1))
    if mv is None or not isinstance(mv.metrics, dict):
        return None
    m = mv.metrics
    per_h = m.get("horizons") if isinstance(m.get("horizons"), dict) else {}
    rows = []
    for h in HORIZONS:
        hm = per_h.get(str(h)) if isinstance(per_h.get(str(h)), dict) else {}
        cov = hm.get("coverage", m.get("coverage"))
        rows.append({"horizon": h, "mae": _num(hm.get("mae")), "coverage": _num(cov, 3), "n": hm.get("validation_rows"),
                     "seasonal_naive_mae": _num(hm.get("seasonal_naive_24_mae"))})
    return {"model_version": mv.version, "training_start": _iso(mv.training_start), "training_end": _iso(mv.training_end),
            "label": "validation (out-of-sample, at training)", "horizons": rows}


def _num(v: Any, nd: int = 1) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, nd) if f == f and abs(f) != float("inf") else None  # NaN and inf are not numbers to show


def _in_sample(session: Session, name: str, end: datetime | None) -> dict[str, Any]:
    """Forecasts of the last 7 days whose target hour the model was trained on (left out of accuracy)."""
    if end is None:
        return {"count": 0, "of": 0}
    windows = training_windows(session, name)
    rows = session.execute(select(Forecast.model_version, Forecast.target_hour).where(
        Forecast.application == name, Forecast.target_hour > end - timedelta(days=7), Forecast.target_hour <= end,
        *repo.origin_bounds(Forecast.origin, end - timedelta(days=7), end))).all()
    flagged = sum(1 for v, t in rows if in_sample(windows, v, t))
    return {"count": flagged, "of": len(rows)}


def _alerts(session: Session, name: str) -> list[dict[str, Any]]:
    """Open alerts first, then the most recent resolved ones; each described by its kind and state."""
    rows = session.scalars(select(Alert).where(Alert.application == name)
                           .order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(8))
    out = [{"key": a.key, "kind": a.kind, "kind_label": ALERT_KINDS.get(a.kind, a.kind.replace("_", " ")),
            "status": a.status, "severity": a.severity, "opened_at": _iso(a.opened_at),
            "resolved_at": _iso(a.resolved_at), "horizon": a.horizon, "target_hour": _iso(a.target_hour),
            "lead_hours": a.lead_hours, "predicted": _r(a.predicted), "threshold": _r(a.threshold),
            "message": a.message, "notified": a.notified_at is not None,
            "notify_error": a.notify_error if a.kind == KIND else None} for a in rows]
    return sorted(out, key=lambda a: a["status"] != "open")


def _run(r: PipelineRun) -> dict[str, Any]:
    return {"origin": _iso(r.origin), "status": r.status, "trigger": r.trigger, "attempts": r.attempts,
            "started_at": _iso(r.started_at), "finished_at": _iso(r.finished_at), "fetch_s": _r(r.fetch_s, 2),
            "predict_s": _r(r.predict_s, 2), "refresh_s": _r(r.refresh_s, 2), "model_version": r.model_version,
            "error": (r.error or "")[:300] or None}
