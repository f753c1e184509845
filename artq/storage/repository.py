"""Reads and idempotent writes the pipeline needs; every function takes an open session."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session

from artq.catalog import MAIN, TARGET_METRIC, series_name
from artq.horizons import N_HORIZONS
from artq.storage.db import upsert
from artq.storage.models import (
    Alert,
    Application,
    Forecast,
    Observation,
    PipelineRun,
    SourceGap,
)
from artq.timeutil import HOUR, as_utc, utcnow

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


# -- a batch of applications at once (the fleet cycle's fetch step) -----------------------------


def latest_observed_hours(session: Session, applications: Sequence[str]) -> dict[str, datetime]:
    """:func:`latest_observed_hour` of many applications in one query (the (application, hour) index)."""
    if not applications:
        return {}
    rows = session.execute(select(Observation.application, func.max(Observation.hour))
                           .where(Observation.application.in_(list(applications))).group_by(Observation.application))
    return {a: as_utc(h) for a, h in rows if h is not None}


def open_gap_hours_many(session: Session, applications: Sequence[str], since: datetime,
                        max_attempts: int = 24) -> dict[str, list[datetime]]:
    """:func:`open_gap_hours` of many applications in one query."""
    out: dict[str, set[datetime]] = {}
    if applications:
        for a, h in session.execute(select(SourceGap.application, SourceGap.hour).where(
                SourceGap.application.in_(list(applications)), SourceGap.hour >= since,
                SourceGap.attempts < max_attempts)):
            out.setdefault(a, set()).add(as_utc(h))
    return {a: sorted(hours) for a, hours in out.items()}


def upsert_many(session: Session, table, rows: list[dict[str, Any]], keys: Sequence[str],
                update: Sequence[str] | None = None) -> None:
    """:func:`artq.storage.db.upsert` as one cached statement run with executemany (the driver sends
    multi-row INSERTs): compiling a 500-row VALUES clause per chunk cost more CPU than the rows."""
    if not rows:
        return
    update = [c for c in (update if update is not None else rows[0]) if c not in keys]
    dialect = session.get_bind().dialect.name
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    for i in range(0, len(rows), 2000):
        session.execute(stmt, rows[i : i + 2000])


def store_observations_many(session: Session, values: dict[str, Iterable[Any]],
                            missing: dict[str, Sequence[tuple[str, str, datetime]]],
                            now: datetime | None = None) -> dict[str, tuple[int, int]]:
    """:func:`store_observations` and :func:`record_gaps` of many applications, in the caller's transaction.

    One upsert for every value; the gaps of the batch's hours are read once, so the usual hour
    (no gap anywhere) costs no gap statement at all. Returns ``{application: (stored, missing)}``.
    """
    now = now or utcnow()
    rows, counts = [], {}
    for app, vals in values.items():
        mine = [dict(application=app, server=v.server, metric=v.metric, hour=v.hour, value=float(v.value), fetched_at=now)
                for v in vals if v.value is not None and np.isfinite(v.value)]
        rows += mine
        counts[app] = (len(mine), len(missing.get(app) or ()))
    upsert_many(session, Observation.__table__, rows, ("application", "server", "metric", "hour"), ("value", "fetched_at"))
    hours = [r["hour"] for r in rows] + [h for m in missing.values() for _, _, h in m]
    if not hours:
        return counts
    existing = {(g.application, g.server, g.metric, as_utc(g.hour)): g for g in session.scalars(
        select(SourceGap).where(SourceGap.application.in_(list(counts)), SourceGap.hour >= min(hours),
                                SourceGap.hour <= max(hours)))}
    for r in rows:  # a value arrived: its gap is closed
        gap = existing.pop((r["application"], r["server"], r["metric"], as_utc(r["hour"])), None)
        if gap is not None:
            session.delete(gap)
    for app, gaps in missing.items():
        for server, metric, hour in gaps:
            gap = existing.get((app, server, metric, hour))
            if gap is not None:
                gap.attempts += 1
                gap.last_checked = now
            else:
                existing[(app, server, metric, hour)] = SourceGap(application=app, server=server, metric=metric,
                                                                  hour=hour, first_seen=now, last_checked=now, attempts=1)
                session.add(existing[(app, server, metric, hour)])
    return counts


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


def forecast_actual_pairs(session: Session, applications: Sequence[str], since: datetime, until: datetime,
                          horizon: int | None = None, bounds: bool = False) -> list[tuple]:
    """Stored forecasts whose target hour is in ``(since, until]`` and has an observed actual.

    Rows ``(application, horizon, model_version, target_hour, actual, forecast)``, with the
    forecast's ``lower`` and ``upper`` after them when ``bounds``, ordered by application and
    target hour: the facts that interval recalibration and drift checks read.
    """
    if not applications:
        return []
    ft, ot = Forecast.__table__, Observation.__table__
    f, o = ft.c, ot.c
    q = (select(f.application, f.horizon, f.model_version, f.target_hour, o.value, f.value,
                *((f.lower, f.upper) if bounds else ()))
         .select_from(ft)
         .join(ot, (o.application == f.application) & (o.hour == f.target_hour)
               & (o.server == MAIN) & (o.metric == TARGET_METRIC))
         .where(f.application.in_(list(applications)), f.target_hour > since, f.target_hour <= until,
                *origin_bounds(f.origin, since, until))
         .order_by(f.application, f.target_hour))
    if horizon is not None:
        q = q.where(f.horizon == horizon)
    return [(a, h, v, as_utc(t), *rest) for a, h, v, t, *rest in session.execute(q).all()]


def origin_bounds(origin_column, since: datetime, until: datetime) -> tuple:
    """``origin`` bounds implied by a target hour in ``(since, until]`` (origin = target - 1..6 h).

    Forecast tables are partitioned by origin on MariaDB: a query that bounds only the target
    hour visits every partition; with these it reads one or two.
    """
    return (origin_column > since - N_HORIZONS * HOUR, origin_column < until)


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


def get_run(session: Session, application: str, origin: datetime) -> PipelineRun | None:
    return session.scalar(select(PipelineRun).where(PipelineRun.application == application, PipelineRun.origin == origin))


def recent_runs(session: Session, application: str | None = None, limit: int = 20) -> list[PipelineRun]:
    q = select(PipelineRun).order_by(PipelineRun.origin.desc(), PipelineRun.id.desc()).limit(limit)
    if application:
        q = q.where(PipelineRun.application == application)
    return list(session.scalars(q))


# -- alerts ---------------------------------------------------------------------------------


def record_alert(session: Session, row: dict[str, Any], refresh: Sequence[str] = ()) -> bool:
    """Open the alert ``row`` unless one with its ``key`` exists (one alert per key, never two).

    An existing alert keeps its state and gets only the ``refresh`` columns updated (a drift
    alert's latest reasons). Returns True when the alert was opened now. Every kind of alert
    (breach expected, freshness, drift) is written here.
    """
    existing = session.scalar(select(Alert).where(Alert.key == row["key"]))
    if existing is None:
        session.add(Alert(**{"status": "open", "severity": "warning", "notify_attempts": 0, **row}))
        session.flush()
        return True
    for column in refresh:
        setattr(existing, column, row[column])
    return False


def application_tiers(session: Session, name: str) -> list[str] | None:
    """The tiers of ``name`` in the applications table, or None when it is not listed."""
    tiers = session.scalar(select(Application.tiers).where(Application.name == name))
    return None if tiers is None else list(tiers)


def active_applications(session: Session) -> list[str]:
    """Names of the applications being forecast (the table every worker reads), sorted."""
    return list(session.scalars(select(Application.name).where(Application.status == "active").order_by(Application.name)))
