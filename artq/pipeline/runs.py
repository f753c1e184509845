"""The run table's bookkeeping: one ``pipeline_runs`` row per (application, origin).

Every path of the cycle (beat's dispatch, a manual run, the reconciler, the demo, a batch of one
or of a hundred) opens, updates and closes runs through these functions only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.pipeline.runtime import Runtime, retry_safe
from artq.storage.models import DONE, PipelineRun, RunStatus
from artq.timeutil import as_utc, utcnow

logger = logging.getLogger(__name__)
__all__ = ["DONE", "RunStatus", "describe", "done_applications", "fail_runs", "in_flight", "open_runs", "runs_of",
           "update_runs"]


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, short enough for the run table, secrets masked."""
    from artq.redaction import redact

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__)


def runs_of(session: Session, applications: Iterable[str], origin: datetime) -> dict[str, PipelineRun]:
    names = list(applications)
    if not names:
        return {}
    rows = session.scalars(select(PipelineRun).where(PipelineRun.origin == origin, PipelineRun.application.in_(names)))
    return {r.application: r for r in rows}


@retry_safe
def open_runs(rt: Runtime, applications: list[str], origin: datetime, trigger: str) -> None:
    """Open the run of each application, or reopen it for a re-run (attempts + 1, last attempt's facts cleared)."""
    now = utcnow()
    with rt.db.session() as s:
        existing = runs_of(s, applications, origin)
        for name in applications:
            run = existing.get(name)
            if run is None:
                s.add(PipelineRun(application=name, origin=origin, status=RunStatus.RUNNING, trigger=trigger, attempts=1,
                                  started_at=now, task_ids={}, details={}))
                continue
            run.status, run.trigger, run.started_at, run.attempts = RunStatus.RUNNING, trigger, now, (run.attempts or 0) + 1
            run.finished_at = run.error = run.model_version = None
            run.fetch_s = run.predict_s = run.refresh_s = None
            run.task_ids, run.details = {}, {}


@retry_safe
def done_applications(rt: Runtime, applications: list[str], origin: datetime) -> set[str]:
    """Those of ``applications`` whose run of ``origin`` completed (succeeded or partial)."""
    with rt.db.session() as s:
        return {name for name, run in runs_of(s, applications, origin).items() if run.status in DONE}


@retry_safe
def in_flight(rt: Runtime, applications: list[str], origin: datetime, within_s: float) -> set[str]:
    """Those whose run of ``origin`` is ``running`` and started less than ``within_s`` ago."""
    since = utcnow() - timedelta(seconds=within_s)
    with rt.db.session() as s:
        return {name for name, run in runs_of(s, applications, origin).items()
                if run.status == RunStatus.RUNNING and as_utc(run.started_at) > since}


def update_runs(session: Session, origin: datetime, fields: dict[str, dict[str, Any]]) -> None:
    """Set fields on runs in the caller's transaction; ``task_ids`` and ``details`` merge, the rest replace."""
    runs = runs_of(session, fields, origin)
    for name, values in fields.items():
        run = runs.get(name)
        if run is None:
            continue
        for key, value in values.items():
            if key in ("task_ids", "details") and isinstance(value, dict):
                value = {**(getattr(run, key) or {}), **value}
            setattr(run, key, value)


@retry_safe
def fail_runs(rt: Runtime, applications: list[str], origin: datetime, reason: str,
              exc: BaseException | None = None) -> list[str]:
    """Close as failed every run of ``applications`` still ``running``; returns those closed.

    Runs already closed (a batch whose refresh finished some applications) keep their outcome.
    The failure is logged with its traceback as well as stored.
    """
    logger.error("cycle %s failed for %d application(s) %s: %s", origin.isoformat(), len(applications),
                 ", ".join(applications[:10]), reason, exc_info=exc)
    now = utcnow()
    closed = []
    with rt.db.session() as s:
        for name, run in runs_of(s, applications, origin).items():
            if run.status == RunStatus.RUNNING:
                run.status, run.finished_at, run.error = RunStatus.FAILED, now, reason[:4000]
                closed.append(name)
    return closed
