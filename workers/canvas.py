"""The hourly cycle as a Celery canvas: chain(fetch, chord(group(predict(h) for h in 1..6), refresh)).

``start_cycle`` is the one door into a cycle: it takes the (application, origin) lock, opens the
run row and sends the canvas; a second trigger of a cycle in flight is refused with
:class:`CycleAlreadyRunning`.
"""

from __future__ import annotations

import logging
from datetime import datetime

from celery import chain, chord, group
from celery.result import AsyncResult

from artq.pipeline.steps import HORIZONS, begin_run, run_status
from artq.storage import repository as repo
from artq.timeutil import as_utc, last_complete_hour, parse_hour
from workers.lock import CycleAlreadyRunning, CycleLock
from workers.runtime import get_runtime
from workers.tasks import (
    fetch,
    fleet_fetch,
    fleet_predict,
    fleet_refresh,
    predict,
    refresh,
)

logger = logging.getLogger(__name__)
DONE = ("succeeded", "partial")


def cycle_signature(application: str, origin: str, lock: str | None = None):
    return chain(
        fetch.si(application, origin, lock=lock),
        chord(group(predict.s(horizon=h) for h in HORIZONS), refresh.s(application, origin, lock=lock)),
    )


def fleet_signature(applications: list[str], origin: str, locks: dict[str, str] | None = None):
    """The same shape for a batch of applications: fetch all, six horizon tasks over all, one refresh."""
    return chain(
        fleet_fetch.si(applications, origin),
        chord(group(fleet_predict.s(horizon=h) for h in HORIZONS), fleet_refresh.s(applications, origin, locks=locks)),
    )


def _iso(origin: str | datetime | None) -> str:
    if origin is None:
        return last_complete_hour().isoformat()
    return (as_utc(origin) if isinstance(origin, datetime) else parse_hour(origin, name="origin")).isoformat()


def cycle_lock() -> CycleLock:
    settings = get_runtime().settings
    from workers.app import app

    broker = None if app.conf.task_always_eager else (app.conf.broker_url or settings.celery.broker_url)
    return CycleLock(broker, settings.operations.cycle_lock_s)


def release_lock(application: str, origin: str, token: str | None) -> None:
    if not token:
        return
    try:
        cycle_lock().release(application, _iso(origin), token)
    except Exception as exc:  # noqa: BLE001 - it expires on its own
        logger.warning("could not release the cycle lock of %s %s: %s", application, origin, exc)


def release_locks(origin: str, tokens: dict[str, str] | None) -> None:
    if not tokens:
        return
    try:
        cycle_lock().release_many(_iso(origin), tokens)
    except Exception as exc:  # noqa: BLE001 - they expire on their own
        logger.warning("could not release %d cycle locks of %s: %s", len(tokens), origin, exc)


def start_cycle(application: str, origin: str | datetime | None = None, trigger: str = "cli",
                force: bool = False) -> AsyncResult:
    """Lock (application, origin), record the run, then send the canvas; returns the chord callback's result.

    Raises :class:`CycleAlreadyRunning` if the cycle is in flight (``force``: the reconciler,
    re-running a cycle it found stuck, takes the lock regardless).
    """
    rt = get_runtime()
    rt.settings.application(application)
    iso = _iso(origin)
    lock = cycle_lock()
    token = lock.acquire(application, iso, force=force)
    if token is None:
        raise CycleAlreadyRunning(
            f"the cycle of {application} for origin {iso} is running already (trigger {trigger!r} ignored); "
            f"see `artq status --app {application}`."
        )
    if not force and _in_flight(rt, application, iso):  # the lock was lost (Redis restarted) but the run is live
        lock.release(application, iso, token)
        raise CycleAlreadyRunning(
            f"the cycle of {application} for origin {iso} started less than "
            f"{rt.settings.operations.cycle_lock_s} s ago and is still running (trigger {trigger!r} ignored)."
        )
    try:
        begin_run(rt, application, iso, trigger)
        result = cycle_signature(application, iso, lock=token).apply_async()
    except BaseException:
        lock.release(application, iso, token)
        raise
    return result


def _in_flight(rt, application: str, iso: str) -> bool:
    from artq.timeutil import utcnow

    with rt.db.session() as s:
        run = repo.get_run(s, application, parse_hour(iso, name="origin"))
        if run is None or run.status != "running":
            return False
        return (utcnow() - as_utc(run.started_at)).total_seconds() < rt.settings.operations.cycle_lock_s


def restart_cycle(application: str, origin: datetime, trigger: str = "reconciler") -> str:
    """The reconciler's way to start a cycle through the broker; returns the callback's task id.

    A stuck cycle (trigger ``reconciler``) is re-run even though its lock may still be held; a
    catch-up respects the lock like any other trigger.
    """
    return start_cycle(application, origin, trigger=trigger, force=trigger == "reconciler").id


def dispatch_cycles(origin: str | datetime | None = None, trigger: str = "beat") -> dict:
    """Start the cycle of every configured application for ``origin``; skip those done or in flight.

    A duplicate trigger (beat firing twice, a redelivered dispatch) therefore starts nothing new.
    One application gets its own canvas; several are cut into batches of
    ``operations.fleet_batch_size``, each running the same chain → six horizons → chord.
    """
    rt = get_runtime()
    if len(rt.settings.applications) > 1:
        return dispatch_fleet(origin, trigger=trigger)
    iso = _iso(origin)
    started, done, running = [], [], []
    for app in rt.settings.applications:
        if run_status(rt, app.name, iso) in DONE:
            done.append(app.name)
            continue
        try:
            start_cycle(app.name, iso, trigger=trigger)
            started.append(app.name)
        except CycleAlreadyRunning:
            running.append(app.name)
    if running:
        logger.info("dispatch %s: %d cycles already in flight: %s", iso, len(running), ", ".join(running[:20]))
    return {"origin": iso, "started": len(started), "already_done": len(done), "in_flight": len(running)}


def dispatch_fleet(origin: str | datetime | None = None, trigger: str = "beat",
                   applications: list[str] | None = None) -> dict:
    """Lock, open the runs of, and send the batched cycles of every application not done or in flight."""
    from artq.pipeline.fleet import batches, begin_runs, done_applications

    rt = get_runtime()
    iso = _iso(origin)
    names = applications or [a.name for a in rt.settings.applications]
    done = done_applications(rt, names, iso)
    todo = [n for n in names if n not in done]
    tokens = cycle_lock().acquire_many(todo, iso)
    held = {n: t for n, t in tokens.items() if t}
    if not held:
        return {"origin": iso, "started": 0, "already_done": len(done), "in_flight": len(todo), "batches": 0}
    try:
        begin_runs(rt, list(held), iso, trigger)
        parts = batches(list(held), rt.settings.operations.fleet_batch_size)
        for part in parts:
            fleet_signature(part, iso, locks={n: held[n] for n in part}).apply_async()
    except BaseException:
        cycle_lock().release_many(iso, held)
        raise
    return {"origin": iso, "started": len(held), "already_done": len(done), "in_flight": len(todo) - len(held),
            "batches": len(parts)}


def run_cycle(runtime, application: str, origin: datetime | None = None, *, use_broker: bool = False,
              trigger: str = "cli", timeout_s: float = 600) -> dict:
    """Run one cycle and wait for its refresh: in this process (eager canvas) or through the broker."""
    from workers.app import app, configure, make_eager
    from workers.runtime import set_runtime

    set_runtime(runtime)
    if use_broker:
        configure(app, runtime.settings)  # the caller's --config, not only ARTQ_CONFIG
    else:
        make_eager(app)
    runtime.settings.application(application)
    result = start_cycle(application, origin or last_complete_hour(), trigger=trigger)
    return result.get(timeout=timeout_s, propagate=True, disable_sync_subtasks=False)
