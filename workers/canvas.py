"""The hourly cycle as a Celery canvas, per batch of applications::

    chain(fetch(batch), chord(group(predict(h) for h in 1..6), refresh(batch)))

:func:`start_cycles` is the one door into the broker: it skips what is done or in flight, takes
the (application, origin) locks, opens the runs and sends one canvas per batch. Beat's dispatch,
``artq run-cycle --celery`` and the reconciler's re-runs all come through it; the in-process
runner (:func:`artq.pipeline.cycle.run_in_process`) calls the same steps without a broker.
Signatures are made by task name on the caller's app, so any app built by
:func:`workers.factory.create_app` can send a cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Celery, chain, chord

from artq.errors import ArtqError, CycleAlreadyRunning
from artq.horizons import HORIZONS
from artq.pipeline import runs
from artq.pipeline.cycle import batches, run_in_process
from artq.pipeline.runs import RunStatus, describe
from artq.pipeline.runtime import Runtime, StorageUnavailable, is_transient
from artq.storage import repository as repo
from artq.timeutil import as_utc, last_complete_hour
from workers.lock import CycleLock

logger = logging.getLogger(__name__)


def cycle_signature(app: Celery, applications: list[str], origin: datetime, locks: dict[str, str] | None = None):
    iso = origin.isoformat()
    return chain(
        app.signature("artq.cycle.fetch", args=(applications, iso), kwargs={"locks": locks}, immutable=True),
        chord([app.signature("artq.cycle.predict", kwargs={"horizon": h}) for h in HORIZONS],
              app.signature("artq.cycle.refresh", args=(applications, iso), kwargs={"locks": locks}), app=app),
        app=app,
    )


def cycle_lock(app: Celery) -> CycleLock:
    return CycleLock(app.conf.broker_url, app.artq_settings.operations.cycle_lock_s)


def release_locks(app: Celery, origin: datetime, tokens: dict[str, str] | None) -> None:
    if not tokens:
        return
    try:
        cycle_lock(app).release_many(origin.isoformat(), tokens)
    except Exception as exc:  # noqa: BLE001 - they expire on their own
        logger.warning("could not release %d cycle locks of %s: %s", len(tokens), origin.isoformat(), exc)


def start_cycles(app: Celery, rt: Runtime, applications: list[str], origin: datetime, trigger: str, *,
                 skip_done: bool = False, force: bool = False) -> dict[str, Any]:
    """Lock, open the runs of, and send the batched cycles of ``applications`` for ``origin``.

    ``skip_done``: leave applications whose run of ``origin`` completed (beat firing twice starts
    nothing). ``force``: take the locks even if held (the reconciler re-running a stuck cycle).
    Returns the counts and, under ``results``, one AsyncResult per batch (the refresh's).
    """
    origin = as_utc(origin)
    iso = origin.isoformat()
    names = list(dict.fromkeys(applications))
    active = rt.applications()  # one query for a fleet (a query per name cost 10-20 s at 10,000)
    for name in names:
        if name not in active:
            rt.application(name)  # unknown or paused: one line naming the closest, nothing started
    done = runs.done_applications(rt, names, origin) if skip_done else set()
    todo = [n for n in names if n not in done]
    lock = cycle_lock(app)
    held = {n: t for n, t in lock.acquire_many(todo, iso, force=force).items() if t}
    if not force and held:  # the lock was lost (Redis restarted) but the run is live
        busy = runs.in_flight(rt, list(held), origin, rt.settings.operations.cycle_lock_s)
        if busy:
            lock.release_many(iso, {n: held.pop(n) for n in busy})
    results = []
    if held:
        try:
            runs.open_runs(rt, list(held), origin, trigger)
            for part in batches(list(held), rt.settings.operations.fleet_batch_size):
                results.append(cycle_signature(app, part, origin, {n: held[n] for n in part}).apply_async())
        except BaseException:
            lock.release_many(iso, held)
            raise
    skipped = [n for n in todo if n not in held]
    if skipped:
        logger.info("%s %s: %d cycles already in flight: %s", trigger, iso, len(skipped), ", ".join(skipped[:20]))
    return {"origin": iso, "started": len(held), "already_done": len(done), "in_flight": len(skipped),
            "batches": len(results), "results": results}


def dispatch(app: Celery, rt: Runtime, origin: datetime, trigger: str = "beat") -> dict[str, Any]:
    """Start the cycle of every configured application for ``origin``; skip those done or in flight."""
    report = start_cycles(app, rt, list(rt.applications()), origin, trigger, skip_done=True)
    report.pop("results")
    return report


def broker_restart(app: Celery, rt: Runtime) -> Callable[[list[str], datetime, str], Any]:
    """The reconciler's way to start cycles through the broker (a stuck run is re-run despite its lock)."""
    def restart(applications: list[str], origin: datetime, trigger: str) -> dict:
        report = start_cycles(app, rt, applications, origin, trigger, force=trigger == "reconciler")
        report.pop("results")
        return report

    return restart


def in_process_restart(rt: Runtime) -> Callable[[list[str], datetime, str], Any]:
    """The reconciler's way to run cycles with no broker: in this process, one origin at a time."""
    return lambda applications, origin, trigger: run_in_process(rt, applications, origin, trigger)


def run_cycle(runtime: Runtime, application: str, origin: datetime | None = None, *, use_broker: bool = False,
              trigger: str = "cli", timeout_s: float = 600, progress: Callable[[str], None] | None = None) -> dict:
    """Run one application's cycle and wait for it: in this process, or through the broker and workers.

    Returns ``{"application", "origin", "status", "horizons_ok", "failed", "error"}``; a step that
    failed is in ``status``/``error``, never an exception. Raises :class:`ArtqError` for a
    mistake (unknown application, no source or broker configured, a cycle already in flight) or
    when the workers do not finish within ``timeout_s``.
    """
    from workers.factory import create_app

    origin = as_utc(origin) if origin else last_complete_hour()
    runtime.settings.require_source()
    runtime.application(application)
    if not use_broker:
        out = run_in_process(runtime, [application], origin, trigger, progress=progress)[application]
        return {"application": application, "origin": origin.isoformat(), **out}
    app = create_app(runtime.settings)
    try:
        report = start_cycles(app, runtime, [application], origin, trigger)
        if not report["started"]:
            raise CycleAlreadyRunning(f"the cycle of {application} for origin {origin.isoformat()} is running already "
                                      f"(trigger {trigger!r} ignored); see `artq status --app {application}`.")
        return _wait(runtime, application, origin, timeout_s, progress)
    finally:
        app.close()


def _wait(rt: Runtime, application: str, origin: datetime, timeout_s: float, progress) -> dict:
    """Poll the run row until the workers close it, saying every few seconds what is still pending."""
    started = time.monotonic()
    said = started
    while True:
        try:
            with rt.db.session() as s:
                run = repo.get_run(s, application, origin)
                stored = len(repo.forecasts_for(s, application, origin))
                state = (run.status, run.error, dict(run.details or {}), run.fetch_s) if run is not None else None
        except Exception as exc:  # the database restarting while we wait: the workers retry, so do we
            if not is_transient(exc) and not isinstance(exc, StorageUnavailable):
                raise
            if progress:
                progress(f"{time.monotonic() - started:.0f} s: database unavailable ({describe(exc)}); still waiting")
            if time.monotonic() - started > timeout_s:
                raise ArtqError(f"the cycle of {application} for {origin.isoformat()} did not finish within "
                                f"{timeout_s:.0f} s and the database is unreachable; see `artq status` later.") from None
            time.sleep(1)
            continue
        if state is not None and state[0] != RunStatus.RUNNING:
            status, error, details, _ = state
            return {"application": application, "origin": origin.isoformat(), "status": str(status),
                    "horizons_ok": list(details.get("horizons_ok", [])), "failed": dict(details.get("horizons_failed", {})),
                    "error": error}
        now = time.monotonic()
        if now - started > timeout_s:
            raise ArtqError(f"the cycle of {application} for {origin.isoformat()} did not finish within {timeout_s:.0f} s; "
                            f"it goes on in the workers: see `artq status --app {application}` and `artq workers`.")
        if progress and now - said >= 5:
            said = now
            fetched = state is not None and state[3] is not None
            if not fetched:
                stage = "waiting for a fetch worker (queue fetch)"
            else:
                pending = "the refresh (queue refresh)" if stored == len(HORIZONS) else "predict workers (queue predict)"
                stage = f"fetch done, {stored} of {len(HORIZONS)} horizons stored, waiting for {pending}"
            progress(f"{now - started:.0f} s: {stage}")
        time.sleep(0.25)
