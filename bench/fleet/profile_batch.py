"""Profile one batch of the fleet cycle in this process, step by step (after ``run.py`` set the database up).

    .venv/bin/python bench/fleet/profile_batch.py --apps 1000 --batch 50 [--cprofile fetch|predict|refresh]

Uses the database and models ``run.py --apps N`` left behind; serves the simulator from this
process (its CPU is reported apart). The batch's origin-hour observations, runs and forecasts
are deleted first, so the fetch pulls a real new hour over HTTP. Warm: the batch runs once to
load its models, then is timed ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa

from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ApplicationSettings, load_settings
from artq.timeutil import last_complete_hour


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--first", type=int, default=100, help="index of the batch's first application")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cprofile", choices=("fetch", "predict", "refresh"))
    ap.add_argument("--mariadb", default=os.environ.get("ARTQ_TEST_MARIADB_URL", "mysql+mysqldb://root@127.0.0.1:3306"))
    ap.add_argument("--work-dir", default=None, help="default /tmp/artq-bench-fleet-<apps>")
    ap.add_argument("--serve", action="store_true", help="only serve the simulator (for --source-url of another run)")
    ap.add_argument("--source-url", help="a simulator served by another process (its CPU then stays out of this one)")
    args = ap.parse_args()
    args.work_dir = args.work_dir or f"/tmp/artq-bench-fleet-{args.apps}"

    from artq.horizons import HORIZONS
    from artq.pipeline import Runtime, runs
    from artq.pipeline.cycle import fetch_step, predict_step, refresh_step
    from artq.sources.simulator import SimulatorConfig, fleet_apps, start_simulator
    from artq.storage.models import Forecast, Observation, PipelineRun

    apps = fleet_apps(args.apps)
    names = [a.name for a in apps][args.first: args.first + args.batch]
    cfg = SimulatorConfig(seed=7, applications=apps, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                          cache_blocks=4096)
    t0 = last_complete_hour()
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        if args.serve:
            print(sim.url, flush=True)
            while True:
                time.sleep(60)
        settings = load_settings(env={"ARTQ_HOME": args.work_dir})
        settings.database_url = f"{args.mariadb}/artq_bench_fleet_{args.apps}"
        settings.models_dir = str(Path(args.work_dir) / "models")
        settings.applications = [ApplicationSettings(name=a.name) for a in apps]
        settings.source.url = args.source_url or sim.url
        settings.source.client_id, settings.source.client_secret = DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
        settings.operations.fleet_batch_size = args.batch
        rt = Runtime(settings)
        times: dict[str, list[float]] = {"fetch": [], "predict": [], "refresh": []}
        for rep in range(args.repeats + 1):
            with rt.db.session() as s:
                s.execute(sa.delete(PipelineRun).where(PipelineRun.origin == t0, PipelineRun.application.in_(names)))
                s.execute(sa.delete(Forecast).where(Forecast.origin == t0, Forecast.application.in_(names)))
                s.execute(sa.delete(Observation).where(Observation.hour >= t0, Observation.application.in_(names)))
            runs.open_runs(rt, names, t0, "profile")
            prof = cProfile.Profile() if (args.cprofile and rep == args.repeats) else None

            def reads() -> int:  # InnoDB pages read from disk (the buffer pool missed)
                with rt.db.session() as s:
                    return int(s.execute(sa.text("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'")).all()[0][1])

            def timed(step: str, fn):
                if prof and args.cprofile == step:
                    prof.enable()
                r0 = reads()
                began, cpu = time.perf_counter(), time.process_time()
                out = fn()
                wall = time.perf_counter() - began
                print(f"  {step}: {reads() - r0} pages read from disk", flush=True)
                if prof and args.cprofile == step:
                    prof.disable()
                if rep:
                    times[step].append(wall)
                return out, wall, time.process_time() - cpu

            payload, fw, fc = timed("fetch", lambda: fetch_step(rt, names, t0))
            results, pw, pc = timed("predict", lambda: [predict_step(rt, payload, h) for h in HORIZONS])
            done, rw, rc = timed("refresh", lambda: refresh_step(rt, results, names, t0))
            print(f"{'warm' if rep else 'cold'} run {rep}: fetch {fw:.3f} s (cpu {fc:.3f}), six horizons {pw:.3f} s "
                  f"(cpu {pc:.3f}), refresh {rw:.3f} s (cpu {rc:.3f}); {done['statuses']}", flush=True)
            if prof:
                pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
                pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        for step, ts in times.items():
            print(f"{step}: median {sorted(ts)[len(ts) // 2]:.3f} s per batch of {len(names)}")
        rt.close()


if __name__ == "__main__":
    main()
