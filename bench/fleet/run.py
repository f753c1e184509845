"""Fleet benchmark: the hourly cycle of N applications on 2 real workers, and one application's cycle
through Celery against the same cycle in-process (median of 20).

    .venv/bin/python bench/fleet/run.py --apps 1000            # ~8 min setup the first time, then ~2 min
    .venv/bin/python bench/fleet/run.py --apps 1000 --reuse    # keep the database and models of a previous run

Needs Redis and MariaDB (see README "Running the tests"). The simulator serves the fleet from this
process over real HTTP. Every application gets its own run row, six forecast rows and dashboard
tables; they all use one trained model artifact (trained once on APP0001, linked into every
application's model directory), so the model is loaded per application but fitted once.

Setup shortcut: the simulator computes every minute of every server, so backfilling 8 days for
1,000 applications takes ~30 minutes; the history of the first ``--simulated`` applications is
backfilled from the simulator and copied (SQL) to the others. The timed cycles then fetch every
application's own latest hours from the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa
import yaml

from artq.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    ApplicationSettings,
    load_settings,
)
from artq.timeutil import HOUR, last_complete_hour

DONE = ("succeeded", "partial", "failed")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare_database(admin_url: str, name: str, reuse: bool) -> str:
    admin = sa.create_engine(admin_url)
    with admin.begin() as conn:
        if not reuse:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        conn.execute(sa.text(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4"))
    admin.dispose()
    from artq.storage import migrate

    url = f"{admin_url}/{name}"
    migrate(url)
    return url


def train_once_and_link(settings, names: list[str], t0) -> str:
    """Train APP0001 on 21 days (unless a champion exists) and register its version for every application.

    The other applications get a symlink to the same files and a copy of its database rows
    (hashes included), so each worker still loads one bundle per application, as in production.
    """
    from artq.pipeline import Runtime, train_step
    from artq.pipeline.ingest import backfill
    from artq.storage import open_database

    first = names[0]
    rt = Runtime(settings)
    version = rt.champions([first]).get(first)
    if version is None:
        settings.forecast.training_days, settings.forecast.min_training_hours = 21, 24 * 14
        log(f"backfilling 21 days of {first} and training its six models")
        backfill(rt, settings.application(first), t0 - timedelta(days=21) + HOUR, t0 - HOUR)
        version = train_step(rt, first, tune=False, until=t0 - 2 * HOUR)["version"]
    rt.close()
    source = Path(settings.models_dir) / first
    for name in names[1:]:
        link = Path(settings.models_dir) / name / "versions" / version
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source / "versions" / version, target_is_directory=True)
    db = open_database(settings.database_url)
    with db.engine.begin() as conn:
        have = set(conn.execute(sa.text("SELECT application FROM champions")).scalars())
        for name in (n for n in names[1:] if n not in have):
            conn.execute(sa.text(
                "INSERT INTO model_versions (application, version, status, path, created_at, training_start, "
                "training_end, metrics, reason, sha256, fingerprint) SELECT :n, version, status, path, created_at, "
                "training_start, training_end, metrics, reason, sha256, fingerprint FROM model_versions "
                "WHERE application = :f AND version = :v"), {"n": name, "f": first, "v": version})
            conn.execute(sa.text("INSERT INTO champions (application, version, previous, reason, promoted_at) "
                                 "SELECT :n, version, previous, reason, promoted_at FROM champions WHERE application = :f"),
                         {"n": name, "f": first})
    db.dispose()
    return version


def clone_history(settings, names: list[str], sources: list[str], recent_since=None) -> None:
    """Give each application without history a copy of one simulated application's (SQL, in MariaDB).

    ``recent_since``: copy the target series whole but the other series only from that hour on
    (the rows a cycle reads; see README "History").
    """
    from artq.storage import open_database

    db = open_database(settings.database_url)
    with db.engine.begin() as conn:
        have = set(conn.execute(sa.text("SELECT DISTINCT application FROM observations")).scalars())
    todo = [n for n in names if n not in have]
    if todo:
        log(f"copying the history of {len(sources)} simulated applications to {len(todo)} others")
    began = time.perf_counter()
    for start in range(0, len(todo), 50):  # a transaction per 50 applications: no giant undo log at 10,000
        with db.engine.begin() as conn:
            for i, name in enumerate(todo[start : start + 50], start=start):
                conn.execute(sa.text(
                    "INSERT INTO observations (application, server, metric, hour, value, fetched_at) "
                    "SELECT :name, server, metric, hour, value, fetched_at FROM observations WHERE application = :src"
                    + ("" if recent_since is None else " AND ((server = 'main' AND metric = 'art') OR hour >= :since)")),
                    {"name": name, "src": sources[i % len(sources)],
                     "since": None if recent_since is None else recent_since.replace(tzinfo=None)})
        if (start // 50) % 20 == 19:
            log(f"  {start + 50}/{len(todo)} ({time.perf_counter() - began:.0f} s)")
    db.dispose()


def backfill_fleet(settings, names: list[str], start, end, threads: int = 4) -> None:
    from artq.pipeline import Runtime
    from artq.pipeline.ingest import backfill
    from artq.storage import open_database
    from artq.storage.models import Observation

    db = open_database(settings.database_url)
    with db.session() as s:
        have = dict(s.execute(sa.select(Observation.application, sa.func.max(Observation.hour))
                              .group_by(Observation.application)).all())
    db.dispose()
    todo = [n for n in names if n not in have]
    if not todo:
        return
    log(f"backfilling {len(todo)} applications, {start:%Y-%m-%d %H:00} .. {end:%Y-%m-%d %H:00} UTC ({threads} threads)")
    rt = Runtime(settings)
    began = time.perf_counter()

    def one(name: str) -> None:
        backfill(rt, settings.application(name), start, end)

    with ThreadPoolExecutor(threads) as pool:
        for i, _ in enumerate(pool.map(one, todo), start=1):
            if i % 100 == 0:
                log(f"  {i}/{len(todo)} ({time.perf_counter() - began:.0f} s)")
    rt.close()


def start_workers(app, config: str, n: int, log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(1, n + 1):
        cmd = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-n", f"fleet{i}@bench", "-c", "1",
               "-P", "prefork", "--without-gossip", "--without-mingle", "--loglevel", "WARNING"]
        env = {**os.environ, "ARTQ_CONFIG": config, "PYTHONUNBUFFERED": "1"}
        out = (log_dir / f"worker{i}.log").open("ab")
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    deadline = time.monotonic() + 90
    want = {f"fleet{i}@bench" for i in range(1, n + 1)}
    while time.monotonic() < deadline:
        seen = {k for r in (app.control.ping(timeout=1.0) or []) for k in r}
        if want <= seen:
            return procs
    raise SystemExit(f"workers did not start; see {log_dir}")


def wait_fleet(db, origin, n: int, timeout_s: float = 900) -> float:
    from artq.storage.models import PipelineRun

    began = time.perf_counter()
    while time.perf_counter() - began < timeout_s:
        with db.session() as s:
            done = s.scalar(sa.select(sa.func.count()).select_from(PipelineRun)
                            .where(PipelineRun.origin == origin, PipelineRun.status.in_(DONE)))
        if done >= n:
            return time.perf_counter()
        time.sleep(0.25)
    raise SystemExit(f"fleet cycle of {origin} not done after {timeout_s} s")


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """User + system CPU of the worker process groups (main processes and pool children), from /proc."""
    groups = {p.pid for p in procs}
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def worker_memory(procs: list[subprocess.Popen]) -> list[dict]:
    """Per worker process (main and pool child): resident memory now and its peak, MB, from /proc."""
    groups = {p.pid: i for i, p in enumerate(procs, start=1)}
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            pgrp = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2])
            if pgrp not in groups:
                continue
            status = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        out.append({"worker": groups[pgrp], "pid": int(entry.name), "main": int(entry.name) == pgrp,
                    "rss_mb": round(int(status["VmRSS"].split()[0]) / 1024), "peak_mb": round(int(status["VmHWM"].split()[0]) / 1024)})
    return sorted(out, key=lambda r: (r["worker"], not r["main"]))


def step_cpu(db, origin) -> dict:
    """CPU seconds per application by step, from the shares each task wrote into its runs' details."""
    from artq.storage.models import PipelineRun

    with db.session() as s:
        details = list(s.scalars(sa.select(PipelineRun.details).where(PipelineRun.origin == origin)))
    sums = {k: [float(d.get(f"{k}_cpu_s") or 0) for d in details if d] for k in ("fetch", "predict", "refresh")}
    n = max(1, len(details))
    return {k: round(sum(v) / n, 5) for k, v in sums.items()} | {"total_worker_cpu_s": round(sum(map(sum, sums.values())), 1)}


def mariadb_cpu_seconds() -> float | None:
    """CPU of this host's MariaDB server (a container's `mariadbd`, in another PID namespace, is not it)."""
    ours = os.readlink("/proc/self/ns/pid")
    for entry in Path("/proc").iterdir():
        try:
            if (entry.name.isdigit() and (entry / "comm").read_text().strip() == "mariadbd"
                    and os.readlink(entry / "ns" / "pid") == ours):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            continue
    return None


def fleet_cycle(app, rt, db, origin, n: int, workers: list[subprocess.Popen] | None = None) -> dict:
    from artq.storage.models import DashboardLatestForecast, Forecast, Observation, PipelineRun
    from workers.canvas import dispatch

    with db.session() as s:  # a re-run of the bench (--reuse) times a real cycle, not a skip:
        s.execute(sa.delete(PipelineRun).where(PipelineRun.origin == origin))
        s.execute(sa.delete(Forecast).where(Forecast.origin == origin))
        # the dashboard shows an older origin, so this cycle's refresh writes every current table
        s.execute(sa.delete(DashboardLatestForecast).where(DashboardLatestForecast.origin >= origin))
        s.execute(sa.delete(Observation).where(Observation.hour >= origin))  # every fetch pulls its new hour
    cpu0, db0, own0 = cpu_seconds(workers or []), mariadb_cpu_seconds(), sum(os.times()[:2])
    began = time.perf_counter()
    report = dispatch(app, rt, origin, trigger="bench")
    sent = time.perf_counter()
    ended = wait_fleet(db, origin, n)
    cpu1, db1, own1 = cpu_seconds(workers or []), mariadb_cpu_seconds(), sum(os.times()[:2])
    with db.session() as s:
        statuses = dict(s.execute(sa.select(PipelineRun.status, sa.func.count()).where(PipelineRun.origin == origin)
                                  .group_by(PipelineRun.status)).all())
        forecasts = s.scalar(sa.select(sa.func.count()).select_from(Forecast).where(Forecast.origin == origin))
    return {"origin": origin.isoformat(), "applications": n, "batches": report["batches"],
            "seconds": round(ended - began, 1), "dispatch_s": round(sent - began, 2), "statuses": statuses,
            "forecast_rows": forecasts, "cpu_s_per_app_by_step": step_cpu(db, origin),
            "worker_memory_mb": worker_memory(workers or []),
            # CPU actually spent, to tell a slow design from a busy machine
            "cpu_s": {"workers": round(cpu1 - cpu0, 1), "mariadb": round(db1 - db0, 1) if db0 is not None else None,
                      "simulator_and_bench": round(own1 - own0, 1)},
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def single_app(settings, name: str, origin, repeats: int) -> dict:
    """One application's cycle, through the broker and workers vs in-process (the same steps, no broker)."""
    from artq.pipeline import Runtime
    from workers.canvas import run_cycle

    out = {}
    for mode, use_broker in (("celery", True), ("in_process", False)):
        times = []
        rt = Runtime(settings)  # warm in both modes: the workers keep their models loaded too
        run_cycle(rt, name, origin, use_broker=use_broker, trigger="bench", timeout_s=120)
        for _ in range(repeats):
            began = time.perf_counter()
            result = run_cycle(rt, name, origin, use_broker=use_broker, trigger="bench", timeout_s=120)
            times.append(time.perf_counter() - began)
            assert result["status"] == "succeeded", result
        rt.close()
        out[mode] = {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                     "max_s": round(max(times), 3), "runs": repeats}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=100, help="applications per batched cycle")
    ap.add_argument("--days", type=int, default=8, help="history per application (the features read 7 days)")
    ap.add_argument("--history", choices=("read", "full"), default="read",
                    help="copies hold the target's whole history and the other series' last 48 hours (read), or every "
                         "series' (full: each application's rows then sit together, so a cycle touches all its pages)")
    ap.add_argument("--simulated", type=int, default=50,
                    help="applications whose history is backfilled from the simulator; the others get a copy")
    ap.add_argument("--repeats", type=int, default=20, help="single-application cycles per mode")
    ap.add_argument("--mariadb", default=os.environ.get("ARTQ_TEST_MARIADB_URL", "mysql+mysqldb://root@127.0.0.1:3306"))
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/6")
    ap.add_argument("--work-dir", default=None, help="default /tmp/artq-bench-fleet-<apps>")
    ap.add_argument("--reuse", action="store_true", help="keep the database and models of the last run")
    ap.add_argument("--skip-fleet", action="store_true", help="only the single-application comparison")
    ap.add_argument("--setup-only", action="store_true", help="prepare the database, models and history, then stop")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()

    import redis

    from artq.pipeline import Runtime
    from artq.sources.simulator import SimulatorConfig, fleet_apps, start_simulator
    from artq.storage import open_database
    from workers.factory import create_app

    work = Path(args.work_dir or f"/tmp/artq-bench-fleet-{args.apps}")
    if not args.reuse and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = last_complete_hour()
    apps = fleet_apps(args.apps)
    names = [a.name for a in apps]
    cfg = SimulatorConfig(seed=7, applications=apps, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                          cache_blocks=4096)
    redis.Redis.from_url(args.redis).flushdb()
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        settings = load_settings(env={"ARTQ_HOME": str(work)})
        settings.database_url = prepare_database(args.mariadb, f"artq_bench_fleet_{args.apps}", args.reuse)
        settings.models_dir = str(work / "models")
        settings.applications = [ApplicationSettings(name=n) for n in names]
        settings.source.url = sim.url
        settings.celery.broker_url = settings.celery.result_backend = args.redis
        settings.operations.fleet_batch_size = args.batch
        settings.backfill_days = args.days

        setup = time.perf_counter()
        version = train_once_and_link(settings, names, t0)
        simulated = names[: args.simulated]
        backfill_fleet(settings, simulated, t0 - timedelta(days=args.days) + HOUR, t0 - HOUR)
        clone_history(settings, names, simulated, None if args.history == "full" else t0 - timedelta(hours=48))
        setup_s = time.perf_counter() - setup
        if args.setup_only:
            log(f"setup done in {setup_s:.0f} s")
            return
        config = work / "artq.yml"
        config.write_text(yaml.safe_dump({
            "database_url": settings.database_url, "models_dir": settings.models_dir,
            "applications": [{"name": n} for n in names],
            "source": {"url": sim.url, "client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET},
            "celery": {"broker_url": args.redis, "result_backend": args.redis},
            "operations": {"fleet_batch_size": args.batch}, "backfill_days": args.days,
        }))
        # The simulator builds each application's model on its first request (~5 ms of this
        # process's CPU each): built now, so the cold cycle measures the workers' cold start,
        # not the simulated controller's
        began = time.perf_counter()
        for name in names:
            sim.world.model(name)
        log(f"simulator: {len(names)} application models built in {time.perf_counter() - began:.1f} s")
        app, rt = create_app(settings), Runtime(settings)
        workers = start_workers(app, str(config), args.workers, work)
        db = open_database(settings.database_url)
        try:
            log(f"{args.apps} applications, {args.workers} workers (-c 1), batches of {args.batch}; model {version}")
            cold = warm = None
            if not args.skip_fleet:
                cold = fleet_cycle(app, rt, db, t0 - HOUR, args.apps, workers)
                log(f"cold cycle (models loaded by each worker): {cold['seconds']} s  {cold['statuses']}  "
                    f"CPU {cold['cpu_s']}  by step {cold['cpu_s_per_app_by_step']}")
                warm = fleet_cycle(app, rt, db, t0, args.apps, workers)
                log(f"warm cycle: {warm['seconds']} s  {warm['statuses']}  forecast rows {warm['forecast_rows']}  "
                    f"CPU {warm['cpu_s']}  by step {warm['cpu_s_per_app_by_step']}")
                log(f"worker memory (MB): {warm['worker_memory_mb']}")
            single = single_app(settings, names[0], t0, args.repeats)
            log(f"one application: through Celery {single['celery']['median_s']} s, "
                f"in-process {single['in_process']['median_s']} s (median of {args.repeats})")
        finally:
            db.dispose()
            rt.close()
            app.close()
            for p in workers:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGTERM)
            for p in workers:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": f"{os.cpu_count()} cores",
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "setup_s": round(setup_s, 1),
               "fleet_cold": cold, "fleet_warm": warm, "single_application": single,
               "settings": {"apps": args.apps, "workers": args.workers, "concurrency": 1, "batch": args.batch,
                            "history_days": args.days, "simulated_history": args.simulated,
                            "history_copy": args.history if not args.reuse else "as set up"}}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
