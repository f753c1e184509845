"""The hourly cycle: three steps over a batch of applications, and the in-process runner.

Every way a cycle runs goes through these functions: beat's dispatch, ``artq run-cycle``, the
reconciler's re-runs, the demo, a batch of a hundred applications or of one. Celery's canvas
(``workers/canvas.py``) calls them as::

    chain(fetch_step(batch), chord(group(predict_step(h) for h in 1..6), refresh_step(batch)))

and :func:`run_in_process` calls them in the same order in this process, with the same retry
policy (:mod:`artq.pipeline.retry`). Each step takes JSON-friendly values plus the origin as
an aware UTC hour (parsed once, where it entered), and returns a small dict.

Failures are accounted per application: a step that cannot serve one application closes that
application's run with the reason and carries on with the others; a transient failure (the
source or the database away for everyone) propagates as :class:`SourceUnavailable` or
:class:`StorageUnavailable`, so the whole step is retried; whoever gives up for good calls
:func:`artq.pipeline.runs.fail_runs`. Nothing here imports Celery.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from artq.errors import ArtqError, ConfigError, CycleAlreadyRunning
from artq.forecasting.batch import predict_many
from artq.horizons import HORIZONS, check_horizon
from artq.pipeline import runs
from artq.pipeline.feature_rows import build_rows, decode, recent_pairs
from artq.pipeline.ingest import fetch_batch, read_committed
from artq.pipeline.retry import policy_for
from artq.pipeline.runs import RunStatus, describe
from artq.pipeline.runtime import Runtime, is_transient, retry_safe
from artq.storage.db import upsert
from artq.storage.models import Forecast
from artq.timeutil import HOUR, as_utc, parse_hour, utcnow

logger = logging.getLogger(__name__)
Progress = Callable[[str], None]


def batches(names: list[str], size: int) -> list[list[str]]:
    """The one place that cuts a list of applications into cycle batches."""
    if size < 1:
        raise ValueError(f"`size` must be at least 1. Got {size}.")
    return [names[i : i + size] for i in range(0, len(names), size)]


def origin_of(payload: dict[str, Any]) -> datetime:
    return parse_hour(payload["origin"], name="origin")


# -- fetch ------------------------------------------------------------------------------------------


@retry_safe
def fetch_step(rt: Runtime, applications: list[str], origin: datetime, task_id: str | None = None) -> dict[str, Any]:
    """Ingest every application's new hours up to ``origin``, then build the feature rows of the six horizons.

    Returns the payload of the horizon tasks: the origin, the model version each application is
    forecast with (chosen once, so all six horizons use the same), the encoded feature rows, and
    the applications that failed with their reason (their runs are closed here).
    """
    started, cpu = time.perf_counter(), time.process_time()
    failed: dict[str, str] = {}
    known = rt.applications(names=applications)  # read now: an application added or paused a minute ago counts
    for name in applications:
        if name not in known:
            failed[name] = (f"fetch: application {name!r} is not in the active applications (removed or paused since "
                            "the cycle started); see `artq apps list`.")
    try:
        rt.settings.require_source()
    except ConfigError as exc:
        failed.update({n: f"fetch: {exc}" for n in applications if n not in failed})
    todo = [n for n in applications if n not in failed]

    # the controller's requests overlap in threads (I/O; the client is thread-safe), one store for the batch
    outcomes = fetch_batch(rt, [known[n] for n in todo], until=origin + HOUR,
                           threads=rt.settings.operations.fleet_fetch_threads) if todo else {}
    fields: dict[str, dict[str, Any]] = {}
    for name, (summary, elapsed) in outcomes.items():
        if isinstance(summary, Exception):
            if is_transient(summary):
                raise summary  # the source or database is away for everyone: the whole step retries
            logger.warning("fetch of %s for %s failed", name, origin.isoformat(), exc_info=summary)
            failed[name] = f"fetch: {describe(summary)}"
            continue
        fields[name] = {"fetch_s": round(elapsed, 4), "task_ids": {"fetch": task_id} if task_id else {},
                        "details": {"fetch": summary.as_dict()}}
    versions = rt.champions(list(fields))
    rt.preload(versions)
    for name in fields:
        if name not in versions:
            failed[name] = f"predict: no trained model for application {name!r}. Run `artq train --app {name}` first."
    layouts, unpredictable = build_rows(rt, {n: versions[n] for n in fields if n in versions}, origin)
    failed.update({n: f"predict: {reason}" for n, reason in unpredictable.items()})
    share = _cpu_share(cpu, len(fields))  # this process's CPU for the step (a worker runs one task at a time)
    for f in fields.values():
        f["details"]["fetch_cpu_s"] = share
    with rt.db.session() as s:
        runs.update_runs(s, origin, fields)
    _close_failed(rt, origin, failed)
    ok = [n for n in applications if n not in failed]
    return {"origin": origin.isoformat(), "applications": ok, "failed": failed,
            "versions": {n: versions[n] for n in ok}, "features": layouts,
            "seconds": round(time.perf_counter() - started, 3)}


def _close_failed(rt: Runtime, origin: datetime, failed: dict[str, str]) -> None:
    if not failed:
        return
    now = utcnow()
    with rt.db.session() as s:
        runs.update_runs(s, origin, {n: {"status": RunStatus.FAILED, "finished_at": now, "error": reason[:4000]}
                                     for n, reason in failed.items()})


# -- predict ------------------------------------------------------------------------------------------


@retry_safe
def predict_step(rt: Runtime, payload: dict[str, Any], horizon: int, task_id: str | None = None) -> dict[str, Any]:
    """Forecast hour ``origin + horizon`` for every application of the batch; store them in one upsert.

    The interval of each forecast is recalibrated by the recent errors of the stored forecasts
    of this horizon (:func:`artq.pipeline.feature_rows.recent_pairs`). A model that cannot be loaded
    (missing, tampered) fails that application only.
    """
    check_horizon(horizon)
    started, cpu = time.perf_counter(), time.process_time()
    t0 = origin_of(payload)
    versions: dict[str, str] = dict(payload.get("versions") or {})
    failed: dict[str, str] = {}
    bundles = {}
    rt.preload(versions)
    for name, version in versions.items():
        try:
            bundles[name] = rt.bundle(name, version)
        except ArtqError as exc:
            failed[name] = describe(exc)
    trained_until = {n: parse_hour(b.training_window_["end"], name="training end") for n, b in bundles.items()}
    pairs = recent_pairs(rt, {n: versions[n] for n in bundles}, t0, horizon, trained_until)
    stored, now = [], utcnow()
    for layout in payload.get("features") or []:
        X = decode(layout, horizon)
        names = [n for n in X.index if n in bundles]
        if not names:
            continue
        X = X.loc[names, bundles[names[0]].feature_names_]  # one layout: the same feature names for all
        rows = predict_many([bundles[n] for n in names], X, horizon, [pairs.get(n) for n in names])
        for f in rows:
            stored.append({**f, "origin": t0, "horizon": horizon, "target_hour": t0 + horizon * HOUR,
                           "model_version": versions[f["application"]], "created_at": now})
    with rt.db.session() as s:
        upsert(s, Forecast.__table__, stored, keys=("application", "origin", "horizon"))
    return {"origin": t0.isoformat(), "horizon": horizon, "ok": [r["application"] for r in stored],
            "failed": failed, "versions": {r["application"]: r["model_version"] for r in stored},
            "recent_errors": {n: len(p) for n, p in pairs.items()},
            "seconds": round(time.perf_counter() - started, 3), "cpu_share_s": _cpu_share(cpu, len(stored)),
            "task_id": task_id}


def horizon_failure(payload: dict[str, Any], horizon: int, exc: BaseException, task_id: str | None = None) -> dict[str, Any]:
    """The result of a horizon that gave up: every application of the batch failed on it, and why."""
    return {"origin": payload.get("origin"), "horizon": horizon, "ok": [], "failed": {}, "error": describe(exc),
            "task_id": task_id}


# -- refresh --------------------------------------------------------------------------------------------


@retry_safe
def refresh_step(rt: Runtime, results: list[Any], applications: list[str], origin: datetime,
                 task_id: str | None = None) -> dict[str, Any]:
    """Chord callback: per application, refresh its dashboard tables and close its run, in one transaction each.

    A result for another origin is refused (counted as that horizon's failure). Applications
    whose run the fetch step closed are left as they are. Idempotent: a retry rewrites the same rows.
    """
    by_horizon: dict[int, dict[str, Any]] = {}
    refused: dict[int, str] = {}
    for r in results:
        if not isinstance(r, dict) or r.get("horizon") not in HORIZONS:
            continue
        if r.get("origin") != origin.isoformat():
            refused[r["horizon"]] = f"a result for origin {r.get('origin')} reached the refresh of {origin.isoformat()}"
            continue
        by_horizon[r["horizon"]] = r
    with rt.db.session() as s:
        still_open = {n for n, run in runs.runs_of(s, applications, origin).items() if run.status == RunStatus.RUNNING}
    todo = [n for n in applications if n in still_open]
    try:
        outcome = _refresh_together(rt, todo, origin, by_horizon, refused, task_id)
    except Exception as exc:
        if is_transient(exc):
            raise  # the database is away (or a deadlock): the whole refresh retries, rewriting the same rows
        # one application's refresh failed the batch's transaction: one transaction each, failures isolated
        logger.warning("refresh of %d applications together failed (%s); one by one", len(todo), describe(exc))
        outcome = _refresh_each(rt, todo, origin, by_horizon, refused, task_id)
    counts: dict[str, int] = {}
    for o in outcome.values():
        counts[o["status"]] = counts.get(o["status"], 0) + 1
    return {"origin": origin.isoformat(), "applications": outcome, "statuses": counts}


def _refresh_together(rt: Runtime, names: list[str], origin: datetime, by_horizon: dict[int, dict[str, Any]],
                      refused: dict[int, str], task_id: str | None) -> dict[str, dict[str, Any]]:
    """Every application's dashboard refresh and run closing in one transaction (READ COMMITTED on
    MariaDB, so the other worker's batch never waits on this one's gap locks)."""
    from artq.dashboard.refresh import refresh_dashboards

    if not names:
        return {}
    started, cpu = time.perf_counter(), time.process_time()
    with rt.db.session() as s:
        read_committed(s)
        dash = refresh_dashboards(s, rt.settings, names, origin)
        elapsed = (time.perf_counter() - started) / len(names)  # the batch's time, shared evenly
        share = _cpu_share(cpu, len(names))
        for d in dash.values():
            d["refresh_cpu_s"] = share
        return _close_runs(s, origin, {n: (_horizon_outcomes(n, by_horizon, refused), dash[n], elapsed) for n in names},
                           task_id)


def _cpu_share(since: float, n: int) -> float:
    """Each application's share of the CPU this process spent since ``since`` (``time.process_time``)."""
    return round((time.process_time() - since) / max(1, n), 5)


def _refresh_each(rt: Runtime, names: list[str], origin: datetime, by_horizon: dict[int, dict[str, Any]],
                  refused: dict[int, str], task_id: str | None) -> dict[str, dict[str, Any]]:
    from artq.dashboard.refresh import refresh_dashboard

    outcome: dict[str, dict[str, Any]] = {}
    for name in names:
        per_h = _horizon_outcomes(name, by_horizon, refused)
        started = time.perf_counter()
        try:
            with rt.db.session() as s:
                dash = refresh_dashboard(s, rt.settings, name, origin)
                outcome.update(_close_runs(s, origin, {name: (per_h, dash, time.perf_counter() - started)}, task_id))
        except Exception as exc:
            if is_transient(exc):
                raise  # the database is away: the whole refresh retries (runs done so far rewrite the same rows)
            logger.error("refresh of %s for %s failed", name, origin.isoformat(), exc_info=exc)
            runs.fail_runs(rt, [name], origin, f"refresh: {describe(exc)}", exc)
            outcome[name] = {"status": RunStatus.FAILED, "horizons_ok": [], "failed": {"refresh": describe(exc)}}
    return outcome


def _horizon_outcomes(name: str, by_horizon: dict[int, dict[str, Any]], refused: dict[int, str]) -> dict[int, dict]:
    out = {}
    for h in HORIZONS:
        r = by_horizon.get(h)
        if r is None:
            out[h] = {"ok": False, "error": refused.get(h, "no result reached the refresh step")}
        elif name in (r.get("ok") or ()):
            out[h] = {"ok": True, "version": (r.get("versions") or {}).get(name), "seconds": r.get("seconds"),
                      "cpu_share_s": r.get("cpu_share_s"),
                      "task_id": r.get("task_id"), "worker": r.get("worker")}
        else:
            out[h] = {"ok": False, "error": (r.get("failed") or {}).get(name) or r.get("error") or "unknown error",
                      "task_id": r.get("task_id")}
    return out


def _close_runs(session, origin: datetime, closing: dict[str, tuple[dict[int, dict], dict, float]],
                task_id: str | None) -> dict[str, dict[str, Any]]:
    """Close each run with its horizons' outcomes, dashboard summary and refresh time (one read of the runs)."""
    fields, out = {}, {}
    for name, (per_h, dash, elapsed) in closing.items():
        fields[name], out[name] = _closed(per_h, dash, elapsed, task_id)
    runs.update_runs(session, origin, fields)
    return out


def _closed(per_h: dict[int, dict], dash: dict, elapsed: float, task_id: str | None) -> tuple[dict, dict[str, Any]]:
    ok = [h for h, r in per_h.items() if r["ok"]]
    failed = {str(h): r["error"] for h, r in per_h.items() if not r["ok"]}
    status = RunStatus.SUCCEEDED if not failed else (RunStatus.PARTIAL if ok else RunStatus.FAILED)
    versions = {r["version"] for r in per_h.values() if r["ok"]}
    return {
        "status": status, "finished_at": utcnow(), "refresh_s": round(elapsed, 4),
        "predict_s": max((r.get("seconds") or 0 for r in per_h.values() if r["ok"]), default=None),
        "error": "; ".join(f"h{h}: {e}" for h, e in failed.items()) or None,
        "model_version": versions.pop() if len(versions) == 1 else None,
        "details": {"horizons_ok": ok, "horizons_failed": failed, "dashboard": dash,
                    "refresh_cpu_s": dash.pop("refresh_cpu_s", None),
                    "predict_cpu_s": round(sum(r.get("cpu_share_s") or 0 for r in per_h.values() if r["ok"]), 5),
                    "workers": {str(h): r["worker"] for h, r in per_h.items() if r.get("worker")}},
        "task_ids": {"predict": {str(h): r["task_id"] for h, r in per_h.items() if r.get("task_id")},
                     **({"refresh": task_id} if task_id else {})},
    }, {"status": status, "horizons_ok": ok, "failed": failed}


# -- in-process --------------------------------------------------------------------------------------------


def run_in_process(rt: Runtime, applications: list[str], origin: datetime, trigger: str,
                   progress: Progress | None = None, sleep: Callable[[float], None] = time.sleep) -> dict[str, dict]:
    """Run the cycle of ``applications`` for ``origin`` in this process, batch by batch.

    The same steps as the canvas, the same retry policy; a step that gives up closes the runs
    of its batch as failed with the reason (never an exception). Returns per application
    ``{"status", "horizons_ok", "failed", "error"}``. Raises :class:`CycleAlreadyRunning` if a
    run of one of them is in flight (started less than ``operations.cycle_lock_s`` ago).
    """
    origin = as_utc(origin)
    busy = runs.in_flight(rt, applications, origin, rt.settings.operations.cycle_lock_s)
    if busy:
        raise CycleAlreadyRunning(f"the cycle of {', '.join(sorted(busy))} for origin {origin.isoformat()} is running "
                                  "already; see `artq status`.")
    say = progress or (lambda _msg: None)
    runs.open_runs(rt, applications, origin, trigger)
    outcome: dict[str, dict] = {}
    for batch in batches(applications, rt.settings.operations.fleet_batch_size):
        outcome.update(_run_batch(rt, batch, origin, say, sleep))
    return outcome


def _run_batch(rt: Runtime, batch: list[str], origin: datetime, say: Progress, sleep) -> dict[str, dict]:
    step = "fetch"
    try:
        say(f"fetching {len(batch)} application(s) for origin {origin:%Y-%m-%d %H:00} UTC")
        payload = with_policy(lambda: fetch_step(rt, batch, origin), "fetch", say, sleep)
        results = []
        for h in HORIZONS:
            try:
                results.append(with_policy(lambda h=h: predict_step(rt, payload, h), f"horizon {h}", say, sleep))
            except Exception as exc:  # noqa: BLE001 - one horizon never sinks the other five
                logger.error("horizon %d of %s gave up", h, origin.isoformat(), exc_info=exc)
                results.append(horizon_failure(payload, h, exc))
        step = "refresh"
        say("refreshing the dashboard tables")
        done = with_policy(lambda: refresh_step(rt, results, batch, origin), "refresh", say, sleep)["applications"]
    except Exception as exc:  # noqa: BLE001 - a step gave up for good: account for every run of the batch
        runs.fail_runs(rt, batch, origin, f"{step}: {describe(exc)}", exc)
        done = {}
    return {n: _outcome_of(rt, n, origin, done.get(n)) for n in batch}


def _outcome_of(rt: Runtime, name: str, origin: datetime, refreshed: dict | None) -> dict[str, Any]:
    from artq.storage import repository as repo

    with rt.db.session() as s:
        run = repo.get_run(s, name, origin)
        status, error = (run.status, run.error) if run is not None else (RunStatus.FAILED, "no run recorded")
    refreshed = refreshed or {}
    return {"status": str(status), "horizons_ok": list(refreshed.get("horizons_ok", [])),
            "failed": dict(refreshed.get("failed", {})), "error": error}


def with_policy(step: Callable[[], dict], name: str, say: Progress, sleep) -> dict:
    """Run ``step``, re-running it on a transient failure as its kind's retry policy says."""
    retry = 0
    while True:
        try:
            return step()
        except Exception as exc:
            policy = policy_for(exc)
            if policy is None or retry >= policy.retries:
                raise
            delay = policy.delay(retry)
            retry += 1
            say(f"{name}: {describe(exc)}; retry {retry} of {policy.retries} in {delay:.0f} s")
            sleep(delay)
