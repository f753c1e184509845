"""The three steps of the hourly cycle. Each takes JSON-friendly values and returns a small dict.

Errors fall in two classes (:func:`artq.pipeline.runtime.is_transient`): transient ones (the
source or the database briefly unreachable) propagate as :class:`SourceUnavailable` or
:class:`StorageUnavailable` so the caller can retry; anything else is recorded in the run row
with its reason and, for a horizon, returned as ``ok: False`` so one horizon cannot sink the
other five.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from artq.errors import ArtqError
from artq.pipeline.ingest import fetch_new_hours
from artq.pipeline.runtime import Runtime, StorageUnavailable, is_transient, retry_safe
from artq.storage import repository as repo
from artq.timeutil import HOUR, as_utc, parse_hour, utcnow

HORIZONS = range(1, 7)


__all__ = ["HORIZONS", "StorageUnavailable", "begin_run", "fetch_step", "horizon_failure", "predict_step",
           "record_failure", "refresh_step", "run_status"]


def _origin(value: str | datetime) -> datetime:
    return as_utc(value) if isinstance(value, datetime) else parse_hour(value, name="origin")


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, short enough for the run table."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


@retry_safe
def begin_run(rt: Runtime, application: str, origin: str | datetime, trigger: str, task_ids: dict | None = None) -> None:
    """Open (or reopen, for a re-run) the run row of this cycle."""
    rt.settings.application(application)
    with rt.db.session() as s:
        run = repo.start_run(s, application, _origin(origin), trigger)
        run.task_ids = {**(run.task_ids or {}), **(task_ids or {})} if task_ids else {}
        run.details = {}


@retry_safe
def run_status(rt: Runtime, application: str, origin: str | datetime) -> str | None:
    """The status of the run of (application, origin), or None if it never started."""
    with rt.db.session() as s:
        run = repo.get_run(s, application, _origin(origin))
        return run.status if run else None


@retry_safe
def fetch_step(rt: Runtime, application: str, origin: str | datetime, task_id: str | None = None) -> dict[str, Any]:
    """Pull every complete hour up to and including ``origin``; return the payload the horizons need.

    After an outage this closes the whole gap: ingest starts at the stored watermark.
    """
    app = rt.settings.application(application)
    t0 = _origin(origin)
    started = time.perf_counter()
    try:
        summary = fetch_new_hours(rt, app, until=t0 + HOUR)
    except Exception as exc:
        if not is_transient(exc):  # transient: the caller retries, the run stays open
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


@retry_safe
def predict_step(rt: Runtime, payload: dict[str, Any], horizon: int, task_id: str | None = None) -> dict[str, Any]:
    """Forecast hour ``origin + horizon`` with the champion model and store it (upsert).

    A domain failure (no model, too little data) comes back as ``ok: False`` with the reason, so
    one horizon cannot sink the other five; transient errors propagate for a retry, and the
    caller turns anything else into ``ok: False`` with :func:`horizon_failure` once it gives up.
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
    except Exception as exc:
        if is_transient(exc) or not isinstance(exc, ArtqError):
            raise
        return horizon_failure(payload, horizon, exc, task_id=task_id, describe_type=False)
    with rt.db.session() as s:
        repo.store_forecast(
            s,
            {
                "application": application, "origin": t0, "horizon": horizon, "target_hour": t0 + horizon * HOUR,
                "value": float(fc.value), "lower": _float(fc.lower), "upper": _float(fc.upper), "coverage": _float(fc.coverage),
                "model_version": version, "drivers": [[str(n), float(c)] for n, c in (fc.drivers or [])][:8],
            },
        )
    return {
        "application": application, "origin": t0.isoformat(), "horizon": horizon, "ok": True,
        "value": round(float(fc.value), 3), "lower": _round(fc.lower), "upper": _round(fc.upper),
        "model_version": version, "seconds": round(time.perf_counter() - started, 3), "task_id": task_id,
    }


def horizon_failure(payload: dict[str, Any], horizon: int, exc: BaseException, task_id: str | None = None,
                    describe_type: bool = True) -> dict[str, Any]:
    """The result of a horizon that gave up: what failed and why, for the refresh step to record."""
    return {"application": payload.get("application"), "origin": payload.get("origin"), "horizon": horizon, "ok": False,
            "error": describe(exc) if describe_type else str(exc), "task_id": task_id}


@retry_safe
def refresh_step(rt: Runtime, results: list[dict[str, Any]], application: str, origin: str | datetime,
                 task_id: str | None = None) -> dict[str, Any]:
    """Chord callback: refresh the dashboard tables and close the run with its outcome.

    Idempotent: a retry (database back after an outage) or a second callback rewrites the same rows.
    """
    t0 = _origin(origin)
    with rt.db.session() as s:
        return refresh_in_session(s, rt, results, application, t0, task_id=task_id)


def refresh_in_session(session, rt: Runtime, results: list[dict[str, Any]], application: str, t0: datetime,
                       task_id: str | None = None) -> dict[str, Any]:
    """The refresh of one application inside the caller's transaction: dashboard tables and run row together."""
    from artq.dashboard.refresh import refresh_dashboard

    started = time.perf_counter()
    results = [r for r in results if isinstance(r, dict)]
    ok = sorted(r["horizon"] for r in results if r.get("ok"))
    failed = {str(r["horizon"]): r.get("error", "unknown error") for r in results if not r.get("ok")}
    missing = sorted(set(HORIZONS) - set(ok) - {int(h) for h in failed})
    for h in missing:
        failed[str(h)] = "no result reached the refresh step"
    dash = refresh_dashboard(session, rt.settings, application, t0)
    elapsed = time.perf_counter() - started
    status = "succeeded" if not failed else ("partial" if ok else "failed")
    error = "; ".join(f"h{h}: {e}" for h, e in sorted(failed.items())) or None
    predict_s = max((r.get("seconds") or 0 for r in results), default=None)
    versions = {r.get("model_version") for r in results if r.get("ok")}
    repo.update_run(
        session, application, t0, status=status, finished_at=utcnow(), refresh_s=round(elapsed, 3),
        predict_s=predict_s, error=error, model_version=versions.pop() if len(versions) == 1 else None,
        details={"horizons_ok": ok, "horizons_failed": failed, "dashboard": dash,
                 "workers": {str(r["horizon"]): r["worker"] for r in results if r.get("worker")}},
        task_ids={"predict": {str(r["horizon"]): r["task_id"] for r in results if r.get("task_id")},
                  **({"refresh": task_id} if task_id else {})},
    )
    return {"application": application, "origin": t0.isoformat(), "status": status, "horizons_ok": ok, "failed": failed}


def record_failure(rt: Runtime, application: str, origin: str | datetime, step: str, exc: BaseException) -> None:
    """Close the run as failed with the step and the reason (a step that gave up for good)."""
    _fail(rt, application, _origin(origin), f"{step}: {describe(exc)}")


def _fail(rt: Runtime, application: str, origin: datetime, error: str) -> None:
    with rt.db.session() as s:
        repo.update_run(s, application, origin, status="failed", finished_at=utcnow(), error=error[:4000])


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _round(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)
