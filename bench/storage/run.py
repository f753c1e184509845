"""Storage at fleet scale: observations for 1,000 applications grown to 10, 30, 100 million rows.

Builds a scratch MariaDB database with artq's own schema (Alembic head: weekly partitions), grows
its history forward in time the way a fleet fills it (48 series x 1,000 applications per hour,
plus 6 forecasts and 6 forecast/actual rows per application and origin), and at each size
measures: bytes per row, bulk generation, the index build, the ingest of one hour through artq's
own upsert, the hot queries of the cycle and the dashboard through artq's own functions, and
their EXPLAIN plans. See README.md. The database is dropped at the end unless --keep.

    nice -n 10 .venv/bin/python bench/storage/run.py --steps 10,30,100
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from sqlalchemy import event, select, text

from artq.config import ApplicationSettings, load_settings
from artq.storage import migrate, open_database
from artq.storage import repository as repo
from artq.storage.db import upsert
from artq.storage.models import DashboardForecastActual, Forecast, Observation
from artq.storage.retention import PARTITIONED, partition_ddl
from artq.timeutil import last_complete_hour

HERE = Path(__file__).parent
ADMIN = "mysql+mysqldb://root@127.0.0.1:3306"
SERVERS = ["main", "ABPServer1", "ABPServer2", "ABPServer3", "ABPServer4", "ABPServer5", "ABPServer6", "CollectionServer"]
METRICS = ["art", "cpm", "epm", "exceptions", "slow", "very_slow"]
SERIES = len(SERVERS) * len(METRICS)  # 48
VERSION = "20261120T030000-3f9a2c1b"
DRIVERS = json.dumps([[f"{m}_{s.lower()}_lag_{k}", round(12.345 * k, 3)] for k, (m, s) in
                      enumerate(zip(METRICS + METRICS[:2], SERVERS, strict=True), start=1)])
INDEXES = {  # the secondary indexes of the schema: dropped while bulk-loading, rebuilt (sorted) after
    "observations": {"uq_observations_key": "UNIQUE KEY (application, server, metric, hour)",
                     "ix_observations_app_hour": "KEY (application, hour)"},
    "forecasts": {"uq_forecasts_key": "UNIQUE KEY (application, origin, horizon)",
                  "ix_forecasts_app_target": "KEY (application, target_hour)"},
    "dashboard_forecast_actual": {"uq_dashboard_forecast_actual_key": "UNIQUE KEY (application, origin, horizon)",
                                  "ix_dashboard_forecast_actual_app_target": "KEY (application, target_hour)"},
}


def drop_indexes(conn, table: str) -> None:
    conn.execute(text(f"ALTER TABLE `{table}` " + ", ".join(f"DROP KEY {name}" for name in INDEXES[table])))


def add_indexes(conn, table: str) -> None:
    parts = []
    for name, spec in INDEXES[table].items():
        kind, cols = spec.split(" (")
        parts.append(f"ADD {kind} {name} ({cols}")
    conn.execute(text(f"ALTER TABLE `{table}` " + ", ".join(parts)))


def app_name(i: int) -> str:
    return f"fleet-app-{i:04d}"


def series_sql() -> str:
    servers = " UNION ALL ".join(f"SELECT '{s}' AS server" for s in SERVERS)
    metrics = " UNION ALL ".join(f"SELECT '{m}' AS metric" for m in METRICS)
    return f"({servers}) sv, ({metrics}) mt"


def generate(conn, apps: int, start: datetime, hours: int) -> None:
    """Rows of ``hours`` hours from ``start``, in ingest order (hour, then application): ids grow with time."""
    s = start.replace(tzinfo=None)
    hrs = f"(SELECT TIMESTAMP'{s:%Y-%m-%d %H:%M:%S}' + INTERVAL seq HOUR AS hr FROM seq_0_to_{hours - 1}) h"
    conn.execute(text(
        "INSERT INTO observations (application, server, metric, hour, value, fetched_at) "
        f"SELECT STRAIGHT_JOIN CONCAT('fleet-app-', LPAD(ap.seq, 4, '0')), sv.server, mt.metric, h.hr, "
        "ROUND(20 + RAND() * 480, 3), h.hr + INTERVAL 65 MINUTE "
        f"FROM {hrs}, seq_1_to_{apps} ap, {series_sql()}"))
    common = (f"FROM {hrs}, seq_1_to_{apps} ap, seq_1_to_6 hz")
    conn.execute(text(
        "INSERT INTO forecasts (application, origin, horizon, target_hour, value, `lower`, `upper`, coverage, "
        "model_version, drivers, created_at) "
        "SELECT STRAIGHT_JOIN CONCAT('fleet-app-', LPAD(ap.seq, 4, '0')), h.hr, hz.seq, h.hr + INTERVAL hz.seq HOUR, "
        f"@v := ROUND(20 + RAND() * 480, 3), @v * 0.8, @v * 1.2, 0.9, '{VERSION}', :drivers, "
        f"h.hr + INTERVAL 70 MINUTE {common}"), {"drivers": DRIVERS})
    conn.execute(text(
        "INSERT INTO dashboard_forecast_actual (application, origin, horizon, target_hour, forecast, `lower`, "
        "`upper`, actual, abs_error, inside_interval, updated_at) "
        "SELECT STRAIGHT_JOIN CONCAT('fleet-app-', LPAD(ap.seq, 4, '0')), h.hr, hz.seq, h.hr + INTERVAL hz.seq HOUR, "
        "@v := ROUND(20 + RAND() * 480, 3), @v * 0.8, @v * 1.2, @v + 3, 3, 1, h.hr + INTERVAL 71 MINUTE "
        f"{common}"))
    conn.commit()


def sizes(conn) -> dict:
    out = {}
    for table in INDEXES:
        rows = conn.scalar(text(f"SELECT COUNT(*) FROM `{table}`"))
        data, index, parts = conn.execute(text(
            "SELECT SUM(DATA_LENGTH), SUM(INDEX_LENGTH), COUNT(*) FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"), {"t": table}).one()
        out[table] = {"rows": rows, "data_bytes": int(data), "index_bytes": int(index), "partitions": parts,
                      "bytes_per_row": round((int(data) + int(index)) / rows, 1) if rows else None}
    return out


class Recorder:
    """The SELECT statements a function sends, as the server received them (for EXPLAIN)."""

    def __init__(self, engine):
        self.sql: list[str] = []
        event.listen(engine, "after_cursor_execute", self._after)

    def _after(self, conn, cursor, statement, params, context, executemany):
        executed = getattr(cursor, "_executed", None)
        if executed and not executemany and statement.lstrip().upper().startswith("SELECT"):
            self.sql.append(executed.decode() if isinstance(executed, bytes) else executed)


def timed(fn, repeat: int = 3) -> dict:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"first_ms": round(times[0] * 1000, 1), "min_ms": round(min(times) * 1000, 1),
            "median_ms": round(statistics.median(times) * 1000, 1)}


def hot_queries(db, settings, t0: datetime, apps: int) -> tuple[dict, dict]:
    from artq.dashboard.queries import application_view
    from artq.dashboard.refresh import refresh_dashboard
    from artq.pipeline.feature_rows import load_history

    batch = [app_name(i) for i in range(1, 101)]
    one = app_name(apps // 2)
    rt = SimpleNamespace(db=db)
    rec = Recorder(db.engine)
    results, plans = {}, {}

    def watermark_100():
        with db.session() as s:
            for a in batch:
                repo.latest_observed_hour(s, a)

    def frame():
        with db.session() as s:
            repo.load_frame(s, one, t0 - timedelta(days=90), t0)

    def pairs():
        with db.session() as s:
            repo.forecast_actual_pairs(s, batch, t0 - timedelta(hours=48), t0, horizon=1)

    def refresh_10():
        for a in batch[:10]:
            with db.session() as s:
                refresh_dashboard(s, settings, a, t0)

    def page():
        with db.session() as s:
            application_view(s, settings, one, hours=72, now=t0 + timedelta(minutes=30))

    def pairs_bounded():  # forecast_actual_pairs plus the origin bounds its target hours imply (horizons 1..6)
        since, f, o = t0 - timedelta(hours=48), Forecast.__table__.c, Observation.__table__.c
        q = (select(f.application, f.horizon, f.model_version, f.target_hour, o.value, f.value)
             .join_from(Forecast.__table__, Observation.__table__,
                        (o.application == f.application) & (o.hour == f.target_hour) & (o.server == "main") & (o.metric == "art"))
             .where(f.application.in_(batch), f.target_hour > since, f.target_hour <= t0, f.horizon == 1,
                    f.origin > since - timedelta(hours=6), f.origin < t0)
             .order_by(f.application, f.target_hour))
        with db.session() as s:
            s.execute(q).all()

    def accuracy_reads(bounded: bool):  # _refresh_accuracy's read of a week of forecast/actual rows, 10 applications
        d = DashboardForecastActual
        for a in batch[:10]:
            where = [d.application == a, d.target_hour > t0 - timedelta(days=7), d.target_hour <= t0, d.actual.is_not(None)]
            if bounded:
                where += [d.origin > t0 - timedelta(days=7, hours=6), d.origin < t0]
            with db.session() as s:
                s.execute(select(d.origin, d.horizon, d.target_hour, d.forecast, d.actual).where(*where)).all()

    cases = {
        "load_history (100 applications, batch history of the fetch step)": lambda: load_history(rt, batch, t0),
        "latest_observed_hour x 100 (watermarks of a batch)": watermark_100,
        "load_frame (one application, 90 days, training)": frame,
        "forecast_actual_pairs (100 applications, 48 h, one horizon)": pairs,
        "refresh_dashboard x 10 (reads + writes of the refresh step)": refresh_10,
        "application_view (dashboard page, 72 h)": page,
        # what the queries on target_hour gain from a bound on the partition column (proposed, not in artq yet)
        "proposed: forecast_actual_pairs + origin bounds": pairs_bounded,
        "refresh's accuracy read x 10, as today (target_hour only)": lambda: accuracy_reads(False),
        "proposed: refresh's accuracy read x 10 + origin bounds": lambda: accuracy_reads(True),
    }
    for name, fn in cases.items():
        rec.sql.clear()
        try:
            results[name] = timed(fn)
        except Exception as exc:  # noqa: BLE001 - a query broken by code in flux must not cost the whole run
            results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        seen, plans[name] = set(), []
        for sql in rec.sql:
            key = re.sub(r"'[^']*'|\b\d+\b", "?", sql)  # one plan per statement shape
            if key in seen:
                continue
            seen.add(key)
            with db.engine.connect() as conn:
                rows = conn.exec_driver_sql("EXPLAIN PARTITIONS " + sql.replace("%", "%%")).mappings().all()
            plans[name].append({"sql": sql if len(sql) < 600 else sql[:600] + " ...",
                                "plan": [{k: r[k] for k in ("table", "partitions", "type", "key", "key_len", "rows", "Extra")}
                                         for r in rows]})
    event.remove(db.engine, "after_cursor_execute", rec._after)
    return results, plans


def ingest(db, apps: int, hour: datetime) -> dict:
    """One hour of the fleet (48 series x apps) through repository.store_observations, one transaction per application."""
    values = [SimpleNamespace(server=s, metric=m, hour=hour, value=123.4) for s in SERVERS for m in METRICS]
    out = {}
    for label in ("insert", "re-run (update)"):
        t = time.perf_counter()
        for i in range(1, apps + 1):
            with db.session() as s:
                repo.store_observations(s, app_name(i), values)
        dt = time.perf_counter() - t
        out[label] = {"rows": apps * SERIES, "seconds": round(dt, 2), "rows_per_s": round(apps * SERIES / dt)}
    rows = [{"application": app_name(i), "server": s, "metric": m, "hour": hour, "value": 1.0, "fetched_at": hour}
            for i in range(1, apps + 1) for s in SERVERS for m in METRICS]
    t = time.perf_counter()
    with db.session() as s:
        upsert(s, Observation.__table__, rows, keys=("application", "server", "metric", "hour"), update=("value", "fetched_at"))
    dt = time.perf_counter() - t
    out["one upsert of the whole hour (chunks of 500)"] = {"rows": len(rows), "seconds": round(dt, 2),
                                                           "rows_per_s": round(len(rows) / dt)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="10,30,100", help="sizes in millions of observation rows (ascending)")
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--db", default="artq_bench_storage")
    ap.add_argument("--keep", action="store_true", help="keep the database (it is large) for another look")
    ap.add_argument("--min-free-gb", type=float, default=25, help="never leave less free disk than this")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    args = ap.parse_args()
    steps = [int(float(x) * 1_000_000) for x in args.steps.split(",")]
    per_hour = args.apps * SERIES
    total_hours = -(-steps[-1] // per_hour)
    end = last_complete_hour()
    start = end - timedelta(hours=total_hours + 2)
    url = f"{ADMIN}/{args.db}"
    admin = sa.create_engine(ADMIN)
    with admin.connect() as c:
        c.execute(text(f"DROP DATABASE IF EXISTS `{args.db}`"))
        c.execute(text(f"CREATE DATABASE `{args.db}` CHARACTER SET utf8mb4"))
    report = {"started": datetime.now(UTC).isoformat(), "apps": args.apps, "series": SERIES, "steps": []}
    try:
        migrate(url)
        db = open_database(url)
        with db.engine.connect() as conn:
            for table, column in PARTITIONED.items():  # empty tables: weekly partitions over the whole span, instant
                conn.execute(text(f"ALTER TABLE `{table}` REMOVE PARTITIONING"))
                conn.execute(text(f"ALTER TABLE `{table}` " + partition_ddl(column, start.date(), (end + timedelta(days=28)).date())))
                drop_indexes(conn, table)
        settings = load_settings(env={"ARTQ_HOME": tempfile.mkdtemp(prefix="artq-bench-storage-")})
        settings.database_url = url
        settings.applications = [ApplicationSettings(name=app_name(i)) for i in range(1, args.apps + 1)]
        done_hours, cursor = 0, start
        for target in steps:
            if report["steps"]:  # grow only while the next size fits with a wide margin
                last = report["steps"][-1]["sizes"]
                need = sum(v["data_bytes"] + v["index_bytes"] for v in last.values()) * (target / last["observations"]["rows"] - 1)
                free = shutil.disk_usage("/var/lib/mysql" if Path("/var/lib/mysql").exists() else "/").free
                if free - 1.5 * need < args.min_free_gb * 1e9:  # 1.5: the index build sorts in tmpdir
                    report["stopped"] = f"{target / 1e6:g} M rows need ~{need / 1e9:.0f} GB more; {free / 1e9:.0f} GB free"
                    print(report["stopped"], flush=True)
                    break
            want = -(-target // per_hour) - 1  # one hour is added by the ingest measurement
            t, before = time.perf_counter(), done_hours
            with db.engine.connect() as conn:
                while done_hours < want:
                    n = min(24, want - done_hours)
                    generate(conn, args.apps, cursor, n)
                    cursor += timedelta(hours=n)
                    done_hours += n
                    print(f"  generated {done_hours} h ({done_hours * per_hour / 1e6:.1f} M observations)", flush=True)
            gen_s = time.perf_counter() - t
            t = time.perf_counter()
            with db.engine.connect() as conn:
                for table in INDEXES:
                    add_indexes(conn, table)
                    conn.execute(text(f"ANALYZE TABLE `{table}`"))
            index_s = time.perf_counter() - t
            t0 = cursor - timedelta(hours=1)  # the newest hour with forecasts: the origin the queries use
            step = {"observations_target": target, "t0": t0.isoformat(),
                    "generate_s": round(gen_s, 1), "generate_rows_per_s (observations + forecast rows)": round((done_hours - before) * per_hour * 1.25 / max(gen_s, 1e-9)),
                    "index_build_s": round(index_s, 1)}
            step["ingest"] = ingest(db, args.apps, cursor)  # the next hour, as the fetch step would store it
            cursor += timedelta(hours=1)
            done_hours += 1
            step["hours"] = done_hours
            with db.engine.connect() as conn:
                step["sizes"] = sizes(conn)
            print(json.dumps(step, default=str), flush=True)
            step["queries"], step["plans"] = hot_queries(db, settings, t0, args.apps)
            report["steps"].append(step)
            Path(args.out).write_text(json.dumps(report, indent=1, default=str))
            print(json.dumps({k: v for k, v in step.items() if k != "plans"}, indent=1, default=str), flush=True)
            if target != steps[-1]:
                with db.engine.connect() as conn:
                    for table in INDEXES:
                        drop_indexes(conn, table)
        db.dispose()
    finally:
        if not args.keep:
            with admin.connect() as c:
                c.execute(text(f"DROP DATABASE IF EXISTS `{args.db}`"))
        admin.dispose()
    report["finished"] = datetime.now(UTC).isoformat()
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
