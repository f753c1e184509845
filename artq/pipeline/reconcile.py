"""The reconciler: cycles that started but never finished, hours with no cycle, hours missed.

Run periodically (beat's ``artq.ops.reconcile``, or ``artq reconcile``). Three checks:

1. **Stuck runs** — ``running`` for longer than ``operations.stuck_after_s`` (a chord that lost
   its callback, a worker or broker that died mid-cycle). With all six forecasts stored, the run
   is completed in place (the refresh step); otherwise the cycle is started again, at most
   ``operations.max_attempts`` times in all, after which the run is closed with the forecasts
   it has and the reason.
2. **Freshness** — by ``operations.freshness_minute`` past the hour, every application must
   have a completed cycle for the last complete hour; if not, a ``freshness`` alert opens (one
   per application and hour: the alert key dedups) and the cycle is started. An open freshness
   alert resolves as soon as a cycle of that hour or a later one completes.
3. **Catch-up** — with ``operations.catch_up_missed``, origins skipped while beat was down (after
   the application's last run, at most ``catch_up_max_hours`` back) are forecast too. Fetch
   closes the data gap on its own: it always pulls from the stored watermark.

Starting cycles is the caller's business (``restart(applications, origin, trigger)``: the
Celery canvas, or the in-process runner), so this module never imports Celery. Re-runs of one
origin go out as one batch, through the same cycle as every other trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from artq.horizons import HORIZONS, RECENT_HOURS
from artq.pipeline.cycle import refresh_step
from artq.pipeline.runs import DONE, RunStatus
from artq.pipeline.runtime import Runtime, retry_safe
from artq.storage import repository as repo
from artq.storage.models import Alert, PipelineRun
from artq.timeutil import HOUR, as_utc, last_complete_hour, utcnow

Restart = Callable[[list[str], datetime, str], Any]


def freshness_key(application: str, origin: datetime) -> str:
    return f"freshness:{application}:{as_utc(origin):%Y-%m-%dT%H:00Z}"


@retry_safe
def complete_run(rt: Runtime, application: str, origin: datetime, reason: str) -> dict[str, Any]:
    """Close a run from what the database holds: refresh with the stored forecasts, name the missing ones."""
    with rt.db.session() as s:
        stored = {f.horizon: f for f in repo.forecasts_for(s, application, origin)}
    iso = as_utc(origin).isoformat()
    results = [{"origin": iso, "horizon": h, "ok": [application], "versions": {application: stored[h].model_version}}
               if h in stored else {"origin": iso, "horizon": h, "ok": [], "error": reason} for h in HORIZONS]
    from artq.pipeline.runs import update_runs

    # the note first: the refresh closes the run, which must never be seen closed without it
    with rt.db.session() as s:
        update_runs(s, as_utc(origin), {application: {"details": {"reconciled": {"at": utcnow().isoformat(), "reason": reason}}}})
    return refresh_step(rt, results, [application], as_utc(origin))


@retry_safe
def stuck_runs(rt: Runtime, now: datetime | None = None) -> list[tuple[str, datetime, int, int]]:
    """(application, origin, attempts, forecasts stored) of every run ``running`` past the deadline."""
    now = now or utcnow()
    deadline = now - timedelta(seconds=rt.settings.operations.stuck_after_s)
    with rt.db.session() as s:
        runs = list(s.scalars(select(PipelineRun).where(PipelineRun.status == RunStatus.RUNNING, PipelineRun.started_at < deadline)))
        return [(r.application, as_utc(r.origin), r.attempts or 1, len(repo.forecasts_for(s, r.application, r.origin)))
                for r in runs]


@retry_safe
def check_freshness(rt: Runtime, now: datetime | None = None) -> dict[str, list[str]]:
    """Open a freshness alert per application with no completed cycle for the last hour (past the minute);
    resolve those whose application has since had a cycle of that hour or later succeed (all six horizons)."""
    now = now or utcnow()
    origin = last_complete_hour(now)
    ops = rt.settings.operations
    names = list(rt.applications())
    opened, resolved = [], []
    with rt.db.session() as s:
        latest_done = dict(s.execute(
            select(PipelineRun.application, PipelineRun.origin).where(PipelineRun.status.in_(DONE),
                                                                      PipelineRun.origin >= origin - RECENT_HOURS * HOUR)
            .order_by(PipelineRun.origin)
        ).all())
        latest_done = {a: as_utc(o) for a, o in latest_done.items()}
        latest_ok = {a: as_utc(o) for a, o in s.execute(
            select(PipelineRun.application, PipelineRun.origin).where(PipelineRun.status == RunStatus.SUCCEEDED,
                                                                      PipelineRun.origin >= origin - RECENT_HOURS * HOUR)
            .order_by(PipelineRun.origin)).all()}
        for alert in s.scalars(select(Alert).where(Alert.kind == "freshness", Alert.status == "open")):
            ok = latest_ok.get(alert.application)  # resolved by a cycle that succeeded, as the refresh does
            if ok is not None and alert.origin is not None and ok >= as_utc(alert.origin):
                alert.status, alert.resolved_at = "resolved", now
                resolved.append(alert.application)
        if now.minute >= ops.freshness_minute:
            for application in (a for a in names if latest_done.get(a) != origin):
                if repo.record_alert(s, dict(
                    key=freshness_key(application, origin), application=application, kind="freshness",
                    opened_at=now, origin=origin,
                    message=(f"{application}: no completed forecast cycle for {origin:%Y-%m-%d %H:00} UTC by "
                             f"minute {ops.freshness_minute} past the hour; see `artq status --app {application}`."),
                    details={"origin": origin.isoformat(), "checked_at": now.isoformat()},
                )):
                    opened.append(application)
    return {"opened": opened, "resolved": resolved}


@retry_safe
def cycles_due(rt: Runtime, now: datetime | None = None) -> list[tuple[str, datetime]]:
    """(application, origin) pairs with no run at all that should have one by now.

    The last complete hour, once past ``freshness_minute`` (its hourly trigger never came), and
    with ``catch_up_missed`` every origin after the application's last run, oldest first.
    """
    now = now or utcnow()
    ops = rt.settings.operations
    latest = last_complete_hour(now)
    if now.minute < ops.freshness_minute:
        latest -= HOUR  # this hour's trigger may still be on its way
    since = latest - (ops.catch_up_max_hours - 1) * HOUR
    with rt.db.session() as s:
        rows = s.execute(select(PipelineRun.application, PipelineRun.origin).where(PipelineRun.origin >= since)).all()
        last_ever = dict(s.execute(
            select(PipelineRun.application, PipelineRun.origin).where(PipelineRun.origin < since).order_by(PipelineRun.origin)
        ).all())
    have: dict[str, set[datetime]] = {}
    for application, origin in rows:
        have.setdefault(application, set()).add(as_utc(origin))
    due = []
    for app in rt.applications().values():
        seen = have.get(app.name, set())
        if latest not in seen:
            due.append((app.name, latest))
        if ops.catch_up_missed:
            before = [o for o in seen if o < latest]
            anchor = max(before) if before else (as_utc(last_ever[app.name]) if app.name in last_ever else None)
            if anchor is not None:
                t = max(anchor + HOUR, since)
                while t < latest:
                    if t not in seen:
                        due.append((app.name, t))
                    t += HOUR
    return due


def reconcile(rt: Runtime, restart: Restart | None = None, now: datetime | None = None) -> dict[str, Any]:
    """One pass of the three checks; ``restart(applications, origin, trigger)`` starts their cycle."""
    now = now or utcnow()
    ops = rt.settings.operations
    report: dict[str, Any] = {"completed": [], "restarted": [], "gave_up": [], "started": [], "errors": []}
    rerun: dict[datetime, list[str]] = {}
    for application, origin, attempts, stored in stuck_runs(rt, now):
        label = f"{application}@{origin:%Y-%m-%dT%H:00Z}"
        try:
            if stored == len(HORIZONS):
                complete_run(rt, application, origin, reason="completed by the reconciler")
                report["completed"].append(label)
            elif restart is not None and attempts < ops.max_attempts:
                rerun.setdefault(origin, []).append(application)
            else:
                complete_run(rt, application, origin,
                             reason=f"no forecast after {attempts} attempts; the reconciler closed the run")
                report["gave_up"].append(label)
        except Exception as exc:  # noqa: BLE001 - one bad run must not stop the others
            report["errors"].append(f"{label}: {type(exc).__name__}: {exc}"[:300])
    _start(restart, rerun, "reconciler", report["restarted"], report["errors"])
    report["freshness"] = check_freshness(rt, now)
    if restart is not None:
        due: dict[datetime, list[str]] = {}
        for application, origin in cycles_due(rt, now):
            due.setdefault(origin, []).append(application)
        _start(restart, due, "catch-up", report["started"], report["errors"])
    return report


def _start(restart: Restart | None, by_origin: dict[datetime, list[str]], trigger: str, started: list[str],
           errors: list[str]) -> None:
    """One restart per origin, oldest first (the cycle cuts it into batches)."""
    for origin in sorted(by_origin):
        labels = [f"{a}@{origin:%Y-%m-%dT%H:00Z}" for a in by_origin[origin]]
        try:
            restart(by_origin[origin], origin, trigger)
            started.extend(labels)
        except Exception as exc:  # noqa: BLE001 - e.g. in flight already; the next pass looks again
            errors.append(f"{', '.join(labels[:5])}: {type(exc).__name__}: {exc}"[:300])
