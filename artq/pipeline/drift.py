"""The periodic drift and staleness check: should this application's models be retrained?"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from artq.errors import ModelError
from artq.horizons import RECENT_HOURS
from artq.pipeline.runtime import Runtime
from artq.storage import repository as repo
from artq.timeutil import as_utc, last_complete_hour, utcnow


def drift_step(rt: Runtime, application: str, now: datetime | None = None) -> dict[str, Any]:
    """Compare recent forecast errors and inputs with the champion's training period.

    A drift opens (or refreshes) one ``drift`` alert per application with the reasons, so an
    operator sees why a retrain was queued; the caller decides whether to queue ``train``.
    """
    from artq.forecasting.drift import check_drift

    rt.application(application)
    t0 = as_utc(now) if now else last_complete_hour()
    try:
        bundle, version = rt.champion(application)
    except ModelError as exc:  # nothing to compare with: a first model is what is needed
        return {"application": application, "model_version": None, "drifted": True, "reasons": [str(exc)], "recent_mae": {}}
    since = t0 - timedelta(hours=RECENT_HOURS)
    with rt.db.session() as s:
        frame = repo.load_frame(s, application, t0 - timedelta(days=14), t0)
        # facts, not the dashboard's copy: stored forecasts against observed actuals
        rows = repo.forecast_actual_pairs(s, [application], since, t0)
    # no recent data at all is itself a finding (staleness), not a crash
    frame = frame.reindex(columns=sorted(set(frame.columns) | {bundle.target, *bundle.exog}))
    errors: dict[int, list[float]] = {}
    for _app, h, _version, _hour, actual, forecast in rows:
        errors.setdefault(int(h), []).append(actual - forecast)
    report = check_drift(bundle, frame, now=t0, errors=errors or None, recent_hours=RECENT_HOURS)
    if report.drifted:
        with rt.db.session() as s:
            repo.record_alert(s, dict(key=f"drift:{application}:{version}", application=application, kind="drift",
                                      severity="info", opened_at=utcnow(), message="; ".join(report.reasons)[:4000],
                                      details=report.as_dict()), refresh=("message", "details"))
    return {"application": application, "model_version": version, **report.as_dict()}
