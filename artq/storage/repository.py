"""Reads and idempotent writes the pipeline needs; every function takes an open session."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session

from artq.catalog import series_name
from artq.storage.db import upsert
from artq.storage.models import (
    Forecast,
    ModelVersion,
    Observation,
    PipelineRun,
    SourceGap,
)
from artq.timeutil import as_utc, utcnow

# -- observations ---------------------------------------------------------------------------


def latest_observed_hour(session: Session, application: str) -> datetime | None:
    """The watermark: the newest hour stored for ``application`` (any series)."""
    value = session.scalar(select(func.max(Observation.hour)).where(Observation.application == application))
    return as_utc(value) if value else None


def store_observations(
    session: Session, application: str, values: Iterable[Any], fetched_at: datetime | None = None
) -> int:
    """Upsert hourly values (objects with server, metric, hour, value); closes their gaps."""
    fetched_at = fetched_at or utcnow()
    rows = [
        dict(application=application, server=v.server, metric=v.metric, hour=v.hour, value=float(v.value), fetched_at=fetched_at)
        for v in values
        if v.value is not None and np.isfinite(v.value)
    ]
    upsert(session, Observation.__table__, rows, keys=("application", "server", "metric", "hour"), update=("value", "fetched_at"))
    if rows:
        keys = [(r["server"], r["metric"], r["hour"]) for r in rows]
        for i in range(0, len(keys), 400):
            session.execute(
                delete(SourceGap).where(
                    SourceGap.application == application,
                    tuple_(SourceGap.server, SourceGap.metric, SourceGap.hour).in_(
                        keys[i : i + 400]
                    ),
                )
            )
    return len(rows)


def record_gaps(
    session: Session, application: str, missing: Sequence[tuple[str, str, datetime]], now: datetime | None = None
) -> int:
    """Remember hours the source had no data for, counting how often each was asked for."""
    now = now or utcnow()
    if not missing:
        return 0
    existing = {
        (g.server, g.metric, as_utc(g.hour)): g
        for g in session.scalars(
            select(SourceGap).where(
                SourceGap.application == application,
                SourceGap.hour >= min(h for _, _, h in missing),
                SourceGap.hour <= max(h for _, _, h in missing),
            )
        )
    }
    for server, metric, hour in missing:
        gap = existing.get((server, metric, hour))
        if gap:
            gap.attempts += 1
            gap.last_checked = now
        else:
            gap = SourceGap(application=application, server=server, metric=metric, hour=hour, first_seen=now, last_checked=now, attempts=1)
            session.add(gap)
            existing[(server, metric, hour)] = gap
    return len(missing)


def open_gap_hours(session: Session, application: str, since: datetime, max_attempts: int = 24) -> list[datetime]:
    """Hours since ``since`` still missing some series, to be asked for again (late data)."""
    rows = session.scalars(
        select(SourceGap.hour)
        .where(SourceGap.application == application, SourceGap.hour >= since, SourceGap.attempts < max_attempts)
        .distinct()
        .order_by(SourceGap.hour)
    )
    return [as_utc(h) for h in rows]


def load_frame(session: Session, application: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The wide hourly frame for hours in ``[start, end]``: a complete UTC grid, NaN where missing."""
    rows = session.execute(
        select(Observation.server, Observation.metric, Observation.hour, Observation.value).where(
            Observation.application == application, Observation.hour >= start, Observation.hour <= end
        )
    ).all()
    index = pd.date_range(as_utc(start), as_utc(end), freq="h", tz="UTC", name="hour")
    if not rows:
        return pd.DataFrame(index=index)
    df = pd.DataFrame(rows, columns=["server", "metric", "hour", "value"])
    df["hour"] = pd.to_datetime(df["hour"], utc=True)
    df["series"] = [series_name(m, s) for m, s in zip(df["metric"], df["server"], strict=True)]
    wide = df.pivot_table(index="hour", columns="series", values="value", aggfunc="last")
    wide = wide.reindex(index)
    wide.columns.name = None
    return wide.sort_index(axis=1)


def observation_count(session: Session, application: str) -> int:
    return session.scalar(select(func.count()).select_from(Observation).where(Observation.application == application)) or 0


# -- forecasts ------------------------------------------------------------------------------


def store_forecast(session: Session, row: dict[str, Any]) -> None:
    """Upsert one forecast row; the unique (application, origin, horizon) key keeps it single."""
    row = {**row, "created_at": row.get("created_at") or utcnow()}
    upsert(
        session,
        Forecast.__table__,
        [row],
        keys=("application", "origin", "horizon"),
    )


def forecasts_for(session: Session, application: str, origin: datetime) -> list[Forecast]:
    return list(
        session.scalars(
            select(Forecast).where(Forecast.application == application, Forecast.origin == origin).order_by(Forecast.horizon)
        )
    )


def actuals(session: Session, application: str, hours: Sequence[datetime], metric: str = "art", server: str = "main") -> dict[datetime, float]:
    if not hours:
        return {}
    rows = session.execute(
        select(Observation.hour, Observation.value).where(
            Observation.application == application,
            Observation.server == server,
            Observation.metric == metric,
            Observation.hour >= min(hours),
            Observation.hour <= max(hours),
        )
    ).all()
    return {as_utc(h): v for h, v in rows}


# -- runs -----------------------------------------------------------------------------------


def start_run(session: Session, application: str, origin: datetime, trigger: str) -> PipelineRun:
    """Create the run row for (application, origin), or reopen it for a re-run (attempts + 1)."""
    run = session.scalar(select(PipelineRun).where(PipelineRun.application == application, PipelineRun.origin == origin))
    now = utcnow()
    if run is None:
        run = PipelineRun(application=application, origin=origin, status="running", trigger=trigger, attempts=1, started_at=now, task_ids={}, details={})
        session.add(run)
    else:
        run.status, run.trigger, run.started_at, run.finished_at, run.error = "running", trigger, now, None, None
        run.attempts = (run.attempts or 0) + 1
    session.flush()
    return run


def get_run(session: Session, application: str, origin: datetime) -> PipelineRun | None:
    return session.scalar(select(PipelineRun).where(PipelineRun.application == application, PipelineRun.origin == origin))


def update_run(session: Session, application: str, origin: datetime, **fields: Any) -> PipelineRun | None:
    """Set fields on a run; dict fields (``task_ids``, ``details``) are merged, not replaced."""
    run = get_run(session, application, origin)
    if run is None:
        return None
    for key, value in fields.items():
        if key in ("task_ids", "details") and isinstance(value, dict):
            value = {**(getattr(run, key) or {}), **value}
        setattr(run, key, value)
    return run


def recent_runs(session: Session, application: str | None = None, limit: int = 20) -> list[PipelineRun]:
    q = select(PipelineRun).order_by(PipelineRun.origin.desc(), PipelineRun.id.desc()).limit(limit)
    if application:
        q = q.where(PipelineRun.application == application)
    return list(session.scalars(q))


# -- model versions -------------------------------------------------------------------------


def record_model_version(session: Session, row: dict[str, Any]) -> None:
    upsert(session, ModelVersion.__table__, [row], keys=("application", "version"))


def set_champion(session: Session, application: str, version: str) -> None:
    """Mark ``version`` champion and every other champion of the application retired."""
    for mv in session.scalars(select(ModelVersion).where(ModelVersion.application == application)):
        if mv.version == version:
            mv.status = "champion"
        elif mv.status == "champion":
            mv.status = "retired"


def model_versions(session: Session, application: str) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).where(ModelVersion.application == application).order_by(ModelVersion.created_at)))

