"""The three steps of the hourly cycle. Each takes JSON-friendly values and returns a small dict."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from artq.errors import ArtqError
from artq.pipeline.ingest import fetch_new_hours
from artq.pipeline.runtime import Runtime
from artq.storage import repository as repo
from artq.timeutil import HOUR, as_utc, parse_hour, utcnow

HORIZONS = range(1, 7)


def _origin(value: str | datetime) -> datetime:
    return as_utc(value) if isinstance(value, datetime) else parse_hour(value, name="origin")


def begin_run(rt: Runtime, application: str, origin: str | datetime, trigger: str, task_ids: dict | None = None) -> None:
    """Open (or reopen, for a re-run) the run row of this cycle."""
    rt.settings.application(application)
    with rt.db.session() as s:
        run = repo.start_run(s, application, _origin(origin), trigger)
        if task_ids:
            run.task_ids = {**(run.task_ids or {}), **task_ids}


def fetch_step(rt: Runtime, application: str, origin: str | datetime, task_id: str | None = None) -> dict[str, Any]:
    """Pull every complete hour up to and including ``origin``; return the payload the horizons need."""
    app = rt.settings.application(application)
    t0 = _origin(origin)
    started = time.perf_counter()
    try:
        summary = fetch_new_hours(rt, app, until=t0 + HOUR)
    except ArtqError as exc:
        _fail(rt, application, t0, f"fetch: {exc}")
        raise
    elapsed = time.perf_counter() - started
    with rt.db.session() as s:
        repo.update_run(
            s, application, t0, fetch_s=round(elapsed, 3),
            task_ids={"fetch": task_id} if task_id else {},
            details={"fetch": summary.as_dict()},
        )
    return {"application": application, "origin": t0.isoformat(), "stored": summary.stored, "missing": summary.missing}


def predict_step(rt: Runtime, payload: dict[str, Any], horizon: int) -> dict[str, Any]:
    """Forecast hour ``origin + horizon`` with the champion model and store it (upsert).

    A domain failure (no model, too little data) comes back as ``ok: False`` with the reason, so
    one horizon cannot sink the other five; infrastructure errors propagate for a retry.
    """
    if horizon not in HORIZONS:
        raise ValueError(f"`horizon` must be in 1..6. Got {horizon}.")
    application, t0 = payload["application"], _origin(payload["origin"])
    started = time.perf_counter()
    try:
        bundle, version = rt.champion(application)
        with rt.db.session() as s:
            frame = repo.load_frame(s, application, t0 - (bundle.history_hours_needed - 1) * HOUR, t0)
        fc = bundle.predict(frame, t0, horizon)
    except ArtqError as exc:
        return {"application": application, "origin": t0.isoformat(), "horizon": horizon, "ok": False, "error": str(exc)}
    with rt.db.session() as s:
        repo.store_forecast(
            s,
            dict(
                application=application, origin=t0, horizon=horizon, target_hour=t0 + horizon * HOUR,
                value=float(fc.value), lower=_float(fc.lower), upper=_float(fc.upper), coverage=_float(fc.coverage),
                model_version=version, drivers=[[str(n), float(c)] for n, c in (fc.drivers or [])][:8],
            ),
        )
    return {
        "application": application, "origin": t0.isoformat(), "horizon": horizon, "ok": True,
        "value": round(float(fc.value), 3), "lower": _round(fc.lower), "upper": _round(fc.upper),
        "model_version": version, "seconds": round(time.perf_counter() - started, 3),
    }


def refresh_step(rt: Runtime, results: list[dict[str, Any]], application: str, origin: str | datetime) -> dict[str, Any]:
    """Chord callback: refresh the dashboard tables and close the run with its outcome."""
    from artq.dashboard.refresh import refresh_dashboard

    t0 = _origin(origin)
    started = time.perf_counter()
    results = [r for r in results if isinstance(r, dict)]
    ok = sorted(r["horizon"] for r in results if r.get("ok"))
    failed = {str(r["horizon"]): r.get("error", "unknown error") for r in results if not r.get("ok")}
    missing = sorted(set(HORIZONS) - set(ok) - {int(h) for h in failed})
    for h in missing:
        failed[str(h)] = "no result reached the refresh step"
    with rt.db.session() as s:
        dash = refresh_dashboard(s, rt.settings, application, t0)
    elapsed = time.perf_counter() - started
    status = "succeeded" if not failed else ("partial" if ok else "failed")
    error = "; ".join(f"h{h}: {e}" for h, e in sorted(failed.items())) or None
    predict_s = max((r.get("seconds") or 0 for r in results), default=None)
    versions = {r.get("model_version") for r in results if r.get("ok")}
    with rt.db.session() as s:
        repo.update_run(
            s, application, t0, status=status, finished_at=utcnow(), refresh_s=round(elapsed, 3),
            predict_s=predict_s, error=error, model_version=versions.pop() if len(versions) == 1 else None,
            details={"horizons_ok": ok, "horizons_failed": failed, "dashboard": dash,
                     "workers": {str(r["horizon"]): r["worker"] for r in results if r.get("worker")}},
        )
    return {"application": application, "origin": t0.isoformat(), "status": status, "horizons_ok": ok, "failed": failed}


def _fail(rt: Runtime, application: str, origin: datetime, error: str) -> None:
    with rt.db.session() as s:
        repo.update_run(s, application, origin, status="failed", finished_at=utcnow(), error=error[:4000])


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)
