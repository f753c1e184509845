"""Retention of the time-series tables, and the weekly partitions they live in on MariaDB.

On MariaDB the big tables (:data:`PARTITIONED`) are RANGE-partitioned by ``TO_DAYS`` of their
time column, one partition per ISO week (Monday 00:00 UTC), plus ``pmax`` (MAXVALUE) that
catches anything beyond the newest week. :func:`enforce_retention` runs daily: it creates the
weeks ahead (so inserts never pile up in ``pmax``) and drops whole partitions whose every row is
older than the retention: a DROP PARTITION frees a week in milliseconds where a DELETE of 8
million rows would hold locks and write undo for minutes. A partition is dropped only once its
*newest* possible hour is past the cutoff, so up to a week more than the retention is kept.

On SQLite (the embedded default, one application or a few) old rows are deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from artq.errors import StorageError
from artq.timeutil import as_utc, utcnow

# table -> the time column its partitions (and its retention) follow
PARTITIONED: dict[str, str] = {
    "observations": "hour",
    "forecasts": "origin",
    "dashboard_forecast_actual": "origin",
}
AHEAD_DAYS = 28  # weeks created ahead: a daily job that stops for three weeks still never fills pmax
FUTURE = "pmax"
LOCK_WAIT_S = 60  # a DDL waiting on a long transaction would queue every later query behind it


@dataclass(frozen=True)
class Partition:
    name: str
    below: date | None  # exclusive upper bound; None for MAXVALUE
    rows: int  # InnoDB's estimate (information_schema), for reports only


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def partition_name(start: date) -> str:
    return f"p{start:%Y%m%d}"


def weekly_clauses(first: date, until: date) -> list[str]:
    """``PARTITION pYYYYMMDD VALUES LESS THAN (TO_DAYS('next monday'))`` for every week from ``first`` through ``until``."""
    out, start = [], week_start(first)
    while start <= until:
        end = start + timedelta(days=7)
        out.append(f"PARTITION {partition_name(start)} VALUES LESS THAN (TO_DAYS('{end.isoformat()}'))")
        start = end
    return out


def partition_ddl(column: str, first: date, until: date) -> str:
    """The ``PARTITION BY`` clause of a table whose data starts at ``first``, with weeks through ``until``."""
    clauses = weekly_clauses(first, until) + [f"PARTITION {FUTURE} VALUES LESS THAN MAXVALUE"]
    return f"PARTITION BY RANGE (TO_DAYS(`{column}`)) (\n  " + ",\n  ".join(clauses) + "\n)"


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The partitions of ``table`` in order (empty when the table is not partitioned)."""
    rows = conn.execute(text(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION, TABLE_ROWS FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND PARTITION_NAME IS NOT NULL "
        "ORDER BY PARTITION_ORDINAL_POSITION"), {"t": table}).all()
    out = []
    for name, description, count in rows:
        below = None if description == "MAXVALUE" else date.fromordinal(int(description) - 365)  # TO_DAYS('0001-01-01') = 366
        out.append(Partition(name, below, int(count or 0)))
    return out


def enforce_retention(engine_or_db: Any, retention_days: int, now: datetime | None = None,
                      ahead_days: int = AHEAD_DAYS) -> dict[str, Any]:
    """Create the partitions ahead and drop (MariaDB) or delete (SQLite) what is older than the retention.

    ``retention_days`` 0 keeps everything (partitions ahead are still created). Idempotent: a
    second call the same day changes nothing. Returns::

        {"dialect": "mariadb" | "sqlite", "retention_days": int, "cutoff": ISO str | None,
         "tables": {table: {"created": [partition], "dropped": [partition],
                            "deleted_rows": int, "partitions": int}}}

    ``partitions`` counts the table's partitions afterwards (0 on SQLite).
    """
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 0:
        raise StorageError(f"retention_days must be a whole number of days, 0 to keep everything. Got {retention_days!r}.")
    engine: Engine = getattr(engine_or_db, "engine", engine_or_db)
    now = as_utc(now or utcnow())
    cutoff = now - timedelta(days=retention_days) if retention_days else None
    dialect = engine.dialect.name
    report: dict[str, Any] = {"dialect": "mariadb" if dialect in ("mysql", "mariadb") else dialect,
                              "retention_days": retention_days, "cutoff": cutoff.isoformat() if cutoff else None,
                              "tables": {}}
    with engine.connect() as conn:
        for table, column in PARTITIONED.items():
            if dialect in ("mysql", "mariadb"):
                report["tables"][table] = _partitioned(conn, table, now, cutoff, ahead_days)
            else:
                report["tables"][table] = _delete_rows(conn, table, column, cutoff)
    return report


def _partitioned(conn: Connection, table: str, now: datetime, cutoff: datetime | None, ahead_days: int) -> dict[str, Any]:
    parts = partitions(conn, table)
    if not parts or parts[-1].below is not None:
        raise StorageError(f"the table `{table}` is not partitioned by week: run `artq init-db` to migrate the database "
                           "(revision 0006 partitions it).")
    conn.execute(text(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}"))
    try:
        created = _create_ahead(conn, table, parts, (now + timedelta(days=ahead_days)).date())
        dropped = []
        if cutoff is not None:
            parts = partitions(conn, table)
            # every row of a partition is older than its bound; keep at least one dated partition so
            # the table always has a place for new weeks to be split from pmax
            old = [p for p in parts[:-2] if p.below is not None and p.below <= cutoff.date()]
            for p in old:
                conn.execute(text(f"ALTER TABLE `{table}` DROP PARTITION `{p.name}`"))
                dropped.append(p.name)
        conn.commit()
    finally:  # the connection goes back to the pool: leave the server's default for its next user
        conn.execute(text("SET SESSION lock_wait_timeout = DEFAULT"))
    return {"created": created, "dropped": dropped, "deleted_rows": 0, "partitions": len(partitions(conn, table))}


def _create_ahead(conn: Connection, table: str, parts: list[Partition], until: date) -> list[str]:
    """Split weeks off ``pmax`` up to ``until`` (instant while pmax is empty, as it is when this runs daily)."""
    dated = [p for p in parts if p.below is not None]
    first = dated[-1].below if dated else week_start(until)
    if first > until:
        return []
    clauses = weekly_clauses(first, until)
    names = [c.split()[1] for c in clauses]
    conn.execute(text(f"ALTER TABLE `{table}` REORGANIZE PARTITION {FUTURE} INTO (\n  "
                      + ",\n  ".join(clauses) + f",\n  PARTITION {FUTURE} VALUES LESS THAN MAXVALUE)"))
    return names


def _delete_rows(conn: Connection, table: str, column: str, cutoff: datetime | None) -> dict[str, Any]:
    deleted = 0
    if cutoff is not None:
        result = conn.execute(text(f"DELETE FROM {table} WHERE {column} < :cutoff"),
                              {"cutoff": cutoff.replace(tzinfo=None)})
        deleted = int(result.rowcount or 0)
        conn.commit()
    return {"created": [], "dropped": [], "deleted_rows": deleted, "partitions": 0}
