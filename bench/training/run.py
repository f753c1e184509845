"""Training at fleet scale: a global model per horizon against per-application models, and retrains per core-hour.

    nice -n 19 .venv/bin/python bench/training/run.py                  # both parts (~15 CPU-min)
    nice -n 19 .venv/bin/python bench/training/run.py --skip-throughput --apps 10

Part 1 (accuracy). Applications of the simulator's fleet (``fleet_apps``, one ``World``), 120 days
each, target ``art`` of the main server with the other 47 series as inputs. Per application:
artq's own rolling-origin backtest (:func:`artq.forecasting.backtest.backtest_frame`, which
refits ``train_bundle`` per block). Global: one XGBoost model per horizon fitted on every
application's rows stacked — the same feature rows artq builds (own history, ``FeatureBuilder``),
the same anchored log-difference targets (``TargetTransform``), the same training window ending
at the same refit origin, artq's ``DEFAULT_PARAMS`` — and scored on exactly the same
(application, origin, horizon) pairs.

Part 2 (throughput). ``train_bundle`` on the history a production retrain reads
(``ForecastSettings.training_days`` of all 48 series), in-process, and the whole ``train_step``
(load from a SQLite store, fingerprint, train, register) — CPU seconds per application.

CPU seconds (``time.process_time``: every thread of this process) are the primary figures; the
machine is shared, so wall seconds are printed beside them only. Results: results.json beside
this file. Simulated frames are cached in .cache/ (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import xgboost as xgb

from artq.catalog import MAIN, METRICS, series_name
from artq.config import ForecastSettings
from artq.forecasting import backtest as bt
from artq.forecasting import registry
from artq.forecasting.features import FeatureBuilder
from artq.forecasting.model import ModelBundle
from artq.forecasting.transforms import BaseColumns, TargetTransform
from artq.forecasting.tuning import (
    DEFAULT_PARAMS,
    EARLY_STOPPING,
    MIN_ROUNDS,
    Member,
    clip_range,
    clipped,
    fit_final,
    fit_matrix,
    train_booster,
)
from artq.sources.simulator import SimulatorConfig, World, fleet_apps

CACHE = Path(os.environ.get("ARTQ_BENCH_TRAINING_CACHE", HERE / ".cache"))
END = datetime(2026, 11, 2, tzinfo=UTC)  # as bench/forecast: the simulator's data end here
TARGET = "art"
H = 6
# the per-application settings of bench/forecast: a 90-day window (as production), a week minimum
SETTINGS = ForecastSettings(training_days=90, min_training_hours=168, seed=0)
GLOBAL_MAX_ROUNDS = 600  # more rows than one application: let early stopping decide up to here
HOLDOUT = 168  # the global model's rounds and base are chosen on each application's last week of origins
GLOBAL_BASES = ("last", "sdelta")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu() -> float:
    return time.process_time()


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def fleet_frames(n: int, seed: int, days: int) -> dict[str, pd.DataFrame]:
    """``{app: wide hourly frame}`` of the first ``n`` fleet applications (cached per app)."""
    apps = fleet_apps(n)
    # a cache of one application's hours: each hour is generated once, not once per series
    world = World(SimulatorConfig(seed=seed, applications=apps, now=lambda: END, cache_blocks=days * 24 + 48))
    start = END - pd.Timedelta(days=days)
    CACHE.mkdir(exist_ok=True)
    out = {}
    for a in apps:
        path = CACHE / f"seed{seed}_{days}d_{a.name}.pkl"
        if path.is_file():
            out[a.name] = pickle.loads(path.read_bytes())
            continue
        cols = {series_name(m.key, s): world.hourly(a.name, s, m.key, start, END) for s in [MAIN, *a.tiers] for m in METRICS}
        out[a.name] = pd.DataFrame(cols)
        path.write_bytes(pickle.dumps(out[a.name]))
    return out


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# part 1: per-application backtest (artq) and the global model on the same pairs
# ---------------------------------------------------------------------------------------------
def per_app(frames: dict[str, pd.DataFrame], test_hours: int, refit_every: int) -> tuple[dict, dict, dict]:
    """artq's backtest of every application: predictions, and the CPU and bytes of each refit."""
    trained: list = []
    original = bt.train_bundle

    def timed(*args, **kwargs):  # the backtest's own refits, timed where they happen
        c = cpu()
        bundle = original(*args, **kwargs)
        trained.append((cpu() - c, bundle))
        return bundle

    bt.train_bundle = timed
    preds, bundles = {}, {}
    cost = {"train_cpu_s": [], "backtest_cpu_s": [], "bundle_bytes": [], "choices": Counter()}
    models_dir = Path(tempfile.mkdtemp(prefix="artq-bench-training-"))
    try:
        for i, (app, frame) in enumerate(frames.items()):
            trained.clear()
            c, t = cpu(), time.perf_counter()
            exog = [col for col in frame.columns if col != TARGET]
            report = bt.backtest_frame(frame, TARGET, exog, test_hours, refit_every, settings=SETTINGS)
            cost["backtest_cpu_s"].append(cpu() - c)
            cost["train_cpu_s"] += [s for s, _ in trained]
            bundles[app] = [b for _, b in trained]  # one per refit block, in order
            for _, bundle in trained:
                info = registry.save(bundle, models_dir, app)
                cost["bundle_bytes"].append(dir_bytes(Path(info.path)))
                for m in bundle.metrics_["horizons"].values():
                    cost["choices"][m["choice"].replace(" + inputs", " (+inputs)")] += 1
            preds[app] = report.predictions[["origin", "horizon", "actual", "artq", "last_value"]].copy()
            log(f"  per-app {i + 1}/{len(frames)} {app}: {len(trained)} refits, "
                f"{sum(s for s, _ in trained):.1f} CPU-s training, {time.perf_counter() - t:.0f} s wall")
    finally:
        bt.train_bundle = original
        shutil.rmtree(models_dir, ignore_errors=True)
    return preds, bundles, cost


def served(like: ModelBundle, names: list[str], exog: list[str], members: dict, boosters: dict,
           guards: bool, without: tuple[str, ...] = ()) -> ModelBundle:
    """A bundle that serves ``members``/``boosters`` through artq's own point-forecast path
    (:meth:`ModelBundle.values`); with ``guards``, the safeguards it reads from the metrics (the
    unfamiliar-row fallback, the range clamp) are those of ``like``, the application's own bundle
    of the same training window, so the global model is served exactly as artq would serve it."""
    b = ModelBundle(target=TARGET, exog=list(exog), horizons=H, coverage=like.coverage, seed=like.seed)
    b.feature_names_, b.members_, b.boosters_ = names, members, boosters
    b.metrics_ = {k: v for k, v in like.metrics_.items() if k not in without} if guards else {}
    return b


def _training_rows(frame: pd.DataFrame, origin: pd.Timestamp, builder: FeatureBuilder) -> dict:
    """One application's training rows for the refit at ``origin``, as ``train_bundle`` builds them:
    the last ``training_days`` of rows up to the origin, targets known at the origin only."""
    f = frame.loc[:origin]
    window_start = f.index[-1] - pd.Timedelta(hours=SETTINGS.training_days * 24 - 1)
    positions = np.flatnonzero(np.asarray(f.index >= window_start))
    arrays = builder.arrays(f, positions, range(1, H + 1), check=False)
    y_all = f[TARGET].to_numpy(dtype=float)
    level = builder.feature_names.index(f"{TARGET}_level")
    X, y, rel = {}, {}, {}
    for h in range(1, H + 1):
        yh = np.where(positions + h < len(y_all), y_all[np.minimum(positions + h, len(y_all) - 1)], np.nan)
        ok = np.isfinite(yh) & np.isfinite(arrays[h][:, level])
        X[h], y[h] = arrays[h][ok], yh[ok]
        rel[h] = (len(f) - 1) - positions[ok]  # hours before the refit origin
    return {"X": X, "y": y, "rel": rel}


def _mae(a: np.ndarray, p: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(p)
    return float(np.mean(np.abs(a[ok] - p[ok]))) if ok.any() else float("nan")


def fit_global(rows: dict[str, dict], h: int, cols: BaseColumns, hidden: np.ndarray, names: list[str]) -> dict:
    """One horizon's global model: base and rounds chosen on every application's last week of
    origins (a gap of ``h`` hours before it), then refitted on all rows."""
    apps = list(rows)
    X = np.vstack([rows[a]["X"][h] for a in apps])
    y = np.concatenate([rows[a]["y"][h] for a in apps])
    rel = np.concatenate([rows[a]["rel"][h] for a in apps])
    owner = np.concatenate([np.full(len(rows[a]["y"][h]), i) for i, a in enumerate(apps)])
    # rel counts back from the origin; a row's target is rel - h hours before it
    val = rel - h < HOLDOUT  # targets in the last week ...
    fit = rel - h >= HOLDOUT + h  # ... and fit rows whose targets end h hours before the holdout's first origin
    val &= rel >= h
    best = None
    for base in GLOBAL_BASES:
        tr = TargetTransform("log", base)
        z = tr.encode(y, X, cols)
        okf, okv = fit & np.isfinite(z), val & np.isfinite(z)
        dfit, dval = fit_matrix(X[okf], hidden, names), fit_matrix(X[okv], hidden, names)
        dfit.set_label(z[okf])
        dval.set_label(z[okv])
        curve: list = []
        booster = train_booster(dfit, DEFAULT_PARAMS, SETTINGS.seed, GLOBAL_MAX_ROUNDS, dval, curve)
        rounds = MIN_ROUNDS + int(np.argmin(curve[0][MIN_ROUNDS - 1 :]))
        m = clipped(booster.predict(dval, iteration_range=(0, rounds)), {"clip": clip_range(z[okf])})
        p = tr.decode(m, X[okv], cols)
        naive = TargetTransform.inv(X[okv, cols.level])
        # scale-free: each application's MAE over its last-value MAE, averaged
        ratio = float(np.nanmean([_mae(y[okv][owner[okv] == i], p[owner[okv] == i])
                                  / _mae(y[okv][owner[okv] == i], naive[owner[okv] == i]) for i in range(len(apps))]))
        if best is None or ratio < best["val_ratio"]:
            best = {"base": base, "rounds": rounds, "val_ratio": ratio}
    member = Member(TargetTransform("log", best["base"]), dict(DEFAULT_PARAMS), max(MIN_ROUNDS, int(best["rounds"] * 1.1)))
    booster = fit_final(X, y, member, cols, hidden, names, SETTINGS.seed)
    return {**best, "member": member, "booster": booster, "rows": len(y)}


def global_model(frames: dict[str, pd.DataFrame], bundles: dict[str, list], test_hours: int,
                 refit_every: int) -> tuple[dict, dict]:
    builder = FeatureBuilder(TARGET, [])
    names = builder.feature_names
    cols = BaseColumns.of(names, TARGET)
    hidden = np.array([n == f"{TARGET}_level" for n in names])  # the anchor: never split on (as artq)
    index = next(iter(frames.values())).index
    blocks = bt.refit_blocks(bt.backtest_origins(index, test_hours, H), refit_every)
    out = {app: [] for app in frames}
    cost = {"train_cpu_s": [], "model_bytes": [], "rows_per_horizon": [], "choice": []}
    for b, block in enumerate(blocks):
        c, t = cpu(), time.perf_counter()
        rows = {app: _training_rows(frame, block[0], builder) for app, frame in frames.items()}
        models = {h: fit_global(rows, h, cols, hidden, names) for h in range(1, H + 1)}
        cost["train_cpu_s"].append(cpu() - c)
        cost["model_bytes"].append(sum(len(m["booster"].save_raw("ubj")) for m in models.values()))
        cost["rows_per_horizon"].append(models[1]["rows"])
        cost["choice"].append({h: f"{m['base']} x{m['member'].n_rounds}" for h, m in models.items()})
        log(f"  global block {b + 1}/{len(blocks)}: {models[1]['rows']} rows per horizon, "
            f"{cost['train_cpu_s'][-1]:.1f} CPU-s, {time.perf_counter() - t:.0f} s wall, "
            + ", ".join(f"h{h} {m['base']} x{m['member'].n_rounds}" for h, m in models.items()))
        members = {h: [m["member"]] for h, m in models.items()}
        boosters = {h: [m["booster"]] for h, m in models.items()}
        for app, frame in frames.items():
            own = bundles[app][b]  # the application's bundle of this block: same window, same origins
            f = frame.loc[: block[-1]]
            pos = f.index.get_indexer(block)
            X = builder.arrays(f, pos, range(1, H + 1), check=False)
            Xo = own.builder.arrays(f, pos, range(1, H + 1), check=False)
            g = served(own, names, [], members, boosters, guards=True)
            g_raw = served(own, names, [], members, boosters, guards=False)
            a_raw = served(own, own.feature_names_, own.exog, own.members_, own.boosters_, guards=False)
            # which safeguard costs what: each one left out in turn ("guard": the unfamiliar-row
            # fallback to the last value; "range": the clamp to the training range)
            a_noguard = served(own, own.feature_names_, own.exog, own.members_, own.boosters_, True, ("guard",))
            a_norange = served(own, own.feature_names_, own.exog, own.members_, own.boosters_, True, ("range",))
            y = frame[TARGET]
            for h in range(1, H + 1):
                out[app].append(pd.DataFrame({
                    "origin": block, "horizon": h, "global": g.values(X[h], h), "global_raw": g_raw.values(X[h], h),
                    "artq_raw": a_raw.values(Xo[h], h), "artq_check": own.values(Xo[h], h),
                    "artq_no_guard": a_noguard.values(Xo[h], h), "artq_no_range": a_norange.values(Xo[h], h),
                    "actual_check": y.reindex(block + pd.Timedelta(hours=h)).to_numpy()}))
    return {app: pd.concat(parts, ignore_index=True) for app, parts in out.items()}, cost


def accuracy(frames: dict[str, pd.DataFrame], test_hours: int, refit_every: int) -> dict:
    log(f"part 1: {len(frames)} applications, {test_hours} test origins, refit every {refit_every} h")
    c0 = cpu()
    preds, bundles, app_cost = per_app(frames, test_hours, refit_every)
    log(f"per-application backtests done: {cpu() - c0:.0f} CPU-s")
    c1 = cpu()
    gpreds, g_cost = global_model(frames, bundles, test_hours, refit_every)
    log(f"global model done: {cpu() - c1:.0f} CPU-s")
    models = ("artq", "global", "last_value", "artq_raw", "global_raw", "artq_no_guard", "artq_no_range")
    per_h = {m: {h: [] for h in range(1, H + 1)} for m in models}
    apps, check_gap, guarded = {}, [], Counter()
    for app in frames:
        p = preds[app].merge(gpreds[app], on=["origin", "horizon"], how="inner", validate="one_to_one")
        assert len(p) == len(preds[app]) == len(gpreds[app])
        same = np.isfinite(p["actual"]) == np.isfinite(p["actual_check"])
        assert same.all() and np.allclose(p["actual"].dropna(), p["actual_check"].dropna())  # same pairs
        # artq's points through values() are the backtest's own: the serving path is reproduced
        check_gap.append(float(np.nanmax(np.abs(p["artq"] - p["artq_check"]) / p["artq"])))
        for m in ("artq", "global"):
            guarded[m] += int((~np.isclose(p[m], p[f"{m}_raw"])).sum())
        ok = p["actual"].notna() & p[list(models)].notna().all(axis=1)
        p = p[ok]  # every model scored on the same pairs
        row = {}
        for m in models:
            maes = [float(np.mean(np.abs(g["actual"] - g[m]))) for _, g in p.groupby("horizon")]
            for h, v in zip(range(1, H + 1), maes, strict=True):
                per_h[m][h].append(v)
            row[m] = float(np.mean(maes))
        row["pairs"] = int(len(p))
        row["global_over_artq"] = row["global"] / row["artq"]
        row["global_raw_over_artq_raw"] = row["global_raw"] / row["artq_raw"]
        row["artq_over_last"] = row["artq"] / row["last_value"]
        row["global_over_last"] = row["global"] / row["last_value"]
        apps[app] = row
    gm = lambda key: float(np.exp(np.mean(np.log([r[key] for r in apps.values()]))))
    summary = {
        "mae_by_horizon": {m: {str(h): float(np.mean(v)) for h, v in per_h[m].items()} for m in models},
        "mean_mae": {m: float(np.mean([r[m] for r in apps.values()])) for m in models},
        "geomean_global_over_artq": gm("global_over_artq"),
        "geomean_global_raw_over_artq_raw": gm("global_raw_over_artq_raw"),
        "apps_global_raw_better_than_artq_raw": int(sum(r["global_raw"] < r["artq_raw"] for r in apps.values())),
        "geomean_artq_over_last": gm("artq_over_last"),
        "geomean_global_over_last": gm("global_over_last"),
        "apps_global_better": int(sum(r["global"] < r["artq"] for r in apps.values())),
        "apps": len(apps),
        "pairs": int(sum(r["pairs"] for r in apps.values())),
        "pairs_changed_by_safeguards": dict(guarded),
        "max_relative_gap_values_vs_backtest": float(max(check_gap)),
    }
    n_refits = len(app_cost["train_cpu_s"])
    cost = {
        "per_app": {"refits": n_refits, "train_cpu_s_total": float(np.sum(app_cost["train_cpu_s"])),
                    "train_cpu_s_per_refit_median": float(np.median(app_cost["train_cpu_s"])),
                    "backtest_cpu_s_total": float(np.sum(app_cost["backtest_cpu_s"])),
                    "bundle_bytes_median": int(np.median(app_cost["bundle_bytes"])),
                    "bytes_all_apps_one_refit": int(np.median(app_cost["bundle_bytes"]) * len(frames)),
                    "choices": dict(app_cost["choices"].most_common())},
        "global": {"refits": len(g_cost["train_cpu_s"]), "train_cpu_s_per_refit": g_cost["train_cpu_s"],
                   "train_cpu_s_total": float(np.sum(g_cost["train_cpu_s"])),
                   "train_cpu_s_per_app_per_refit": float(np.mean(g_cost["train_cpu_s"]) / len(frames)),
                   "model_bytes": g_cost["model_bytes"], "rows_per_horizon": g_cost["rows_per_horizon"],
                   "choice": g_cost["choice"]},
    }
    return {"summary": summary, "cost": cost, "apps": apps}


# ---------------------------------------------------------------------------------------------
# part 2: retrains per core-hour
# ---------------------------------------------------------------------------------------------
def throughput(everything: dict[str, pd.DataFrame], n: int, step_apps: int, queued: int) -> dict:
    fs = ForecastSettings()  # production's: training_days, tune_trials=0
    rows = fs.training_days * 24
    frames = dict(list(everything.items())[:n])
    log(f"part 2: train_bundle on {fs.training_days} days ({rows} rows) of {len(frames)} applications")
    out = {"training_days": fs.training_days, "tune": False, "in_process": [], "train_step": []}
    tiers = {s: s for s in fleet_apps(1)[0].tiers}
    from artq.forecasting.model import train_bundle
    for app, frame in frames.items():
        f = frame.iloc[-rows:]
        c, t = cpu(), time.perf_counter()
        train_bundle(f, TARGET, settings=fs, tune=False, tier_names=tiers)
        out["in_process"].append({"app": app, "cpu_s": cpu() - c, "wall_s": time.perf_counter() - t,
                                  "load1": os.getloadavg()[0]})
        log(f"  train_bundle {app}: {out['in_process'][-1]['cpu_s']:.2f} CPU-s, {time.perf_counter() - t:.1f} s wall")
    if step_apps:
        out["train_step"], out["queued"] = train_steps(dict(list(everything.items())[:step_apps + queued]), fs, queued)
    return out


def train_steps(frames: dict[str, pd.DataFrame], fs: ForecastSettings, queued: int) -> tuple[list[dict], dict]:
    """``artq.pipeline.training.train_step`` (the body of the ``artq.model.train`` task) on a SQLite
    store holding each application's history: load, fingerprint, train, register, promote. The
    history is shifted to end at the last complete hour, so a queued task (which trains up to
    now) reads the same 90 days. In-process on all but the last ``queued`` applications, then
    the last ``queued`` through a real ``artq.model.train`` task on a train worker."""
    from types import SimpleNamespace

    from artq.config import ApplicationSettings, load_settings
    from artq.pipeline import Runtime, train_step
    from artq.storage import migrate, open_database
    from artq.storage import repository as repo
    from artq.timeutil import last_complete_hour

    home = Path(tempfile.mkdtemp(prefix="artq-bench-train-step-"))
    results: list[dict] = []
    through_queue: dict = {}
    try:
        settings = load_settings(env={"ARTQ_HOME": str(home)})
        settings.database_url = f"sqlite:///{home / 'artq.db'}"
        settings.models_dir = str(home / "models")
        settings.applications = [ApplicationSettings(name=a) for a in frames]
        settings.forecast = fs
        migrate(settings.database_url)
        db = open_database(settings.database_url)
        end = pd.Timestamp(last_complete_hour())
        log(f"  storing {fs.training_days} days of 48 series per application in SQLite (ending {end.isoformat()})")
        for app, frame in frames.items():
            f = frame.iloc[-(fs.training_days * 24):]
            f = f.set_axis(f.index + (end - f.index[-1]))
            values = []
            for server in [MAIN, *fleet_apps(1)[0].tiers]:
                for m in METRICS:
                    s = f[series_name(m.key, server)]
                    values += [SimpleNamespace(server=server, metric=m.key, hour=h.to_pydatetime(), value=v)
                               for h, v in s.dropna().items()]
            with db.session() as s:
                repo.store_observations(s, app, values)
        db.dispose()
        names = list(frames)
        rt = Runtime(settings)
        try:
            for app in names[: len(names) - queued]:
                c, t = cpu(), time.perf_counter()
                r = train_step(rt, app, until=end.to_pydatetime())
                results.append({"app": app, "cpu_s": cpu() - c, "wall_s": time.perf_counter() - t,
                                "registered": r["registered"], "load1": os.getloadavg()[0]})
                log(f"  train_step {app}: {results[-1]['cpu_s']:.2f} CPU-s, {results[-1]['wall_s']:.1f} s wall")
        finally:
            rt.close()
        if queued:
            through_queue = queued_trains(settings, home, names[len(names) - queued :])
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return results, through_queue


REDIS_DB = 11  # a database of the shared Redis that nothing else here uses


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def queued_trains(settings, home: Path, names: list[str]) -> dict:
    """Send ``artq.model.train`` for each application to a real train worker (Redis broker,
    ``-P solo`` so the task runs in the process whose CPU is read) and wait for every result."""
    import yaml

    from workers.factory import create_app

    broker = f"redis://127.0.0.1:6379/{REDIS_DB}"
    settings.celery.broker_url = settings.celery.result_backend = broker
    config = home / "artq.yml"
    config.write_text(yaml.safe_dump({
        "database_url": settings.database_url, "models_dir": settings.models_dir,
        "applications": [{"name": a.name, "tiers": a.tiers} for a in settings.applications],
        "celery": {"broker_url": broker, "result_backend": broker}, "forecast": vars(settings.forecast)}))
    env = {**os.environ, "ARTQ_CONFIG": str(config)}
    cmd = ["nice", "-n", "19", sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "train", "-P", "solo",
           "-c", "1", "--without-mingle", "--without-gossip", "-l", "warning", "-n", f"bench-train-{os.getpid()}@%h"]
    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(home / "worker.log").open("w"))
    app = create_app(settings)
    try:
        deadline = time.monotonic() + 120
        while not app.control.ping(destination=[f"bench-train-{os.getpid()}@{platform.node()}"], timeout=1.0):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the train worker did not start: " + (home / "worker.log").read_text()[-2000:])
        log(f"  train worker {worker.pid} ready; sending {len(names)} artq.model.train tasks")
        c0, t0 = _proc_cpu(worker.pid), time.perf_counter()
        handles = [app.send_task("artq.model.train", args=[n]) for n in names]
        out = [h.get(timeout=1800) for h in handles]
        cpu_s, wall_s = _proc_cpu(worker.pid) - c0, time.perf_counter() - t0
        registered = sum(bool(o.get("registered")) for o in out)
        log(f"  queued: {len(names)} retrains, {cpu_s:.1f} CPU-s in the worker ({cpu_s / len(names):.2f} per application), "
            f"{wall_s:.0f} s wall, {registered} registered")
        return {"apps": len(names), "worker_cpu_s": cpu_s, "cpu_s_per_app": cpu_s / len(names), "wall_s": wall_s,
                "registered": registered, "pool": "solo", "broker": "redis (db %d)" % REDIS_DB}
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        app.close()


def schedule(cpu_per_app: float, budget: int) -> dict:
    """The arithmetic of the staggered schedule for 1,000 and 10,000 applications."""
    from artq.pipeline.retraining import HOURS_PER_WEEK, weekly_slot

    out = {}
    for n in (1000, 10_000):
        names = [f"APP{i:04d}" for i in range(1, n + 1)]  # fleet_apps' names
        per_hour = np.bincount([weekly_slot(x) for x in names], minlength=HOURS_PER_WEEK)
        over = np.maximum(per_hour - budget, 0)
        core_h = n * cpu_per_app / 3600
        out[str(n)] = {
            "fleet_core_hours": core_h,
            "hours_on_cores": {str(c): core_h / c for c in (1, 2, 4, 8, 16)},
            "weekly_slot_per_hour_mean": n / HOURS_PER_WEEK, "weekly_slot_per_hour_max": int(per_hour.max()),
            "hours_over_budget": int((over > 0).sum()), "weekly_retrains_beyond_budget": int(over.sum()),
            "busiest_hour_cpu_s": float(per_hour.max() * cpu_per_app),
            "budget_hour_cpu_s": float(budget * cpu_per_app),
            "mean_train_cores": n / HOURS_PER_WEEK * cpu_per_app / 3600,
        }
    out["budget"] = budget
    out["budget_cores"] = budget * cpu_per_app / 3600
    out["apps_per_core_hour"] = 3600 / cpu_per_app
    return out


def command() -> str:
    args = sys.argv[1:]
    if (ROOT / "COMMIT").is_file():  # snapshot.sh passes --out first; a later --out is the user's
        args = args[2:] if args[:1] == ["--out"] else args
        return " ".join(["bench/training/snapshot.sh", *args])
    return " ".join(["nice -n 19 .venv/bin/python bench/training/run.py", *args])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--apps", type=int, default=40, help="applications in the accuracy part")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--test-hours", type=int, default=336)
    ap.add_argument("--refit-every", type=int, default=168)
    ap.add_argument("--throughput-apps", type=int, default=20)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--step-apps", type=int, default=10, help="applications through train_step in-process (0: none)")
    ap.add_argument("--queued", type=int, default=10, help="further applications through a real train worker (0: none)")
    ap.add_argument("--out", default=str(HERE / "results.json"))
    a = ap.parse_args()

    from artq.config import OperationsSettings

    started = datetime.now(UTC).isoformat(timespec="seconds")
    if (ROOT / "COMMIT").is_file():  # a snapshot made by snapshot.sh: exactly that commit's code
        commit, dirty = (ROOT / "COMMIT").read_text().strip(), ""
    else:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "artq"], capture_output=True,
                               text=True).stdout.strip()
    import artq
    c0 = cpu()
    frames = fleet_frames(max(a.apps, a.throughput_apps, a.step_apps + a.queued), a.seed, a.days)
    log(f"{len(frames)} simulated frames ready ({cpu() - c0:.0f} CPU-s)")
    result = {"started": started, "commit": commit, "artq_uncommitted_changes": dirty.splitlines(),
              "artq_imported_from": str(Path(artq.__file__).parent),
              "command": command(),
              "host": {"cores": os.cpu_count(), "python": platform.python_version(), "xgboost": xgb.__version__,
                       "load1_at_start": os.getloadavg()[0],
                       "others_timing": sorted(p.name for p in Path("/work/helpers").glob("TIMING-*"))},
              "simulator": {"seed": a.seed, "days": a.days, "end": END.isoformat()}}
    if not a.skip_accuracy:
        sub = dict(list(frames.items())[: a.apps])
        result["accuracy"] = {"settings": {"training_days": SETTINGS.training_days, "test_hours": a.test_hours,
                                           "refit_every": a.refit_every, "global_max_rounds": GLOBAL_MAX_ROUNDS,
                                           "global_holdout_hours": HOLDOUT, "global_bases": list(GLOBAL_BASES),
                                           "early_stopping": EARLY_STOPPING},
                              **accuracy(sub, a.test_hours, a.refit_every)}
        s = result["accuracy"]["summary"]
        log(f"mean MAE: artq {s['mean_mae']['artq']:.3f}, global {s['mean_mae']['global']:.3f}, "
            f"last value {s['mean_mae']['last_value']:.3f}; geomean global/artq {s['geomean_global_over_artq']:.3f}")
    if not a.skip_throughput:
        tp = throughput(frames, a.throughput_apps, a.step_apps, a.queued)
        per_app = float(np.median([r["cpu_s"] for r in tp["in_process"]]))
        step = float(np.median([r["cpu_s"] for r in tp["train_step"]])) if tp["train_step"] else None
        tp["cpu_s_per_app_median"] = per_app
        tp["cpu_s_per_app_mean"] = float(np.mean([r["cpu_s"] for r in tp["in_process"]]))
        tp["train_step_cpu_s_median"] = step
        tp["schedule"] = schedule(step or per_app, OperationsSettings().retrain_budget_per_hour)
        result["throughput"] = tp
        log(f"train_bundle {per_app:.2f} CPU-s per application (median), train_step {step}; "
            f"{tp['schedule']['apps_per_core_hour']:.0f} applications per core-hour")
    Path(a.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
