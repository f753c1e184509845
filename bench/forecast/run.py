"""artq vs skforecast, mlforecast, statsforecast MSTL and seasonal naive, side by side.

    bench/.venv/bin/python bench/forecast/run.py            # everything: real data + simulator
    bench/.venv/bin/python bench/forecast/run.py --only nab_latency,sim_seed1 --no-peers

Every model is scored on identical (origin, horizon) pairs: artq's rolling-origin backtest
decides the origins and the refit blocks, and each peer is refitted on the same blocks with the
same training window. Results go to bench/forecast/results/ (markdown table + JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from peers import PEERS

from artq.config import ForecastSettings
from artq.forecasting.backtest import (
    backtest_frame,
    backtest_origins,
    load_csv,
    refit_blocks,
)

DATA = Path("/work/shared/data")
NAB = DATA / "nab-aws-cloudwatch" / "hourly"
MS = DATA / "ms-cloud-monitoring"
CACHE = HERE / ".cache"  # peer forecasts per dataset and peers.py version (git-ignored)
SETTINGS = ForecastSettings(training_days=90, min_training_hours=168, seed=0)
NAIVE = ("last_value", "seasonal_naive_24", "seasonal_naive_168")
SHORT = dict(test_hours=96, refit_every=24)  # 14-day series: 4 refits, 96 origins
LONG = dict(test_hours=672, refit_every=168)  # long series: 4 weeks of origins, weekly refit


def real_datasets() -> dict[str, dict]:
    d = {
        "ms_ecommerce_rps": dict(csv=MS / "ecommerce_api_incoming_rps_1h.csv", target="incoming_rps", exog="none", **LONG),
        "ms_mongodb_app01": dict(csv=MS / "mongodb_application_rps_1h.csv", target="app01_rps", exog="auto", test_hours=72, refit_every=24),
        "ms_ingress_stream01": dict(csv=MS / "data_ingress_rate_1h.csv", target="stream01_rate", exog="auto", test_hours=72, refit_every=24),
        **{f"ms_mongodb_app0{i}": dict(csv=MS / "mongodb_application_rps_1h.csv", target=f"app0{i}_rps", exog="auto",
                                       test_hours=72, refit_every=24) for i in (2, 3, 4)},
        **{f"ms_ingress_stream0{i}": dict(csv=MS / "data_ingress_rate_1h.csv", target=f"stream0{i}_rate", exog="auto",
                                          test_hours=72, refit_every=24) for i in (2, 3, 4, 5)},
        "ms_mongodb_machine": dict(csv=MS / "mongodb_machine_rps_1h.csv", target="machine01_rps", exog="none", **SHORT),
        "nab_latency": dict(csv=NAB / "ec2_request_latency_system_failure_1h.csv", target="latency_mean", exog="auto", **SHORT),
        "nab_asg_cpu": dict(csv=NAB / "cpu_utilization_asg_misconfiguration_1h.csv", target="cpu_utilization_pct_mean", exog="none", test_hours=336, refit_every=168),
        "nab_elb_group": dict(csv=NAB / "group_2014-04-10_elb_ec2_rds_1h.csv", target="elb_8c0756_request_count_sum", exog="auto", **SHORT),
        "nab_grok_asg": dict(csv=NAB / "grok_asg_anomaly_1h.csv", target="value_mean", exog="none", **SHORT),
    }
    for p in sorted(NAB.glob("*_1h.csv")):
        name = p.name.removesuffix("_1h.csv")
        for kind in ("ec2_cpu_utilization_", "rds_cpu_utilization_", "ec2_disk_write_bytes_", "ec2_network_in_"):
            if name.startswith(kind):
                target = {"ec2_disk": "disk_write_bytes_mean", "ec2_netw": "network_in_bytes_mean"}.get(name[:8], "cpu_utilization_pct_mean")
                d[f"nab_{name.replace('_utilization', '').replace('_bytes', '')}"] = dict(csv=p, target=target, exog="none", **SHORT)
    return d


def simulator_frame(seed: int, days: int) -> pd.DataFrame | None:
    try:
        from artq.catalog import DEFAULT_TIERS, MAIN, METRICS, series_name
        from artq.sources.simulator import SimApp, SimulatorConfig, World
    except ImportError:
        return None
    end = datetime(2026, 11, 2, tzinfo=UTC)
    start = end - pd.Timedelta(days=days)
    world = World(SimulatorConfig(seed=seed, applications=[SimApp(name="ABP")], now=lambda: end))
    cols = {series_name(m.key, s): world.hourly("ABP", s, m.key, start, end) for s in [MAIN, *DEFAULT_TIERS] for m in METRICS}
    return pd.DataFrame(cols)


def score(pred: pd.DataFrame, model: str, scale: float) -> dict:
    maes = []
    for h, g in pred.groupby("horizon"):
        ok = g["actual"].notna() & g[model].notna()
        maes.append(float(np.abs(g.loc[ok, "actual"] - g.loc[ok, model]).mean()))
    mae = float(np.mean(maes))
    return {"mae": mae, "mase": mae / scale if scale > 0 else None, "mae_by_h": maes}


def peer_forecasts(name: str, frame: pd.DataFrame, target: str, test_hours: int, refit_every: int,
                   pred: pd.DataFrame, seconds: dict) -> None:
    """Add each peer's forecasts as a column of ``pred`` (rows: origin, horizon), from the cache when it has them."""
    exog = [c for c in frame.columns if c != target]
    origins = backtest_origins(frame.index, test_hours)
    blocks = refit_blocks(origins, refit_every)
    for peer, fn in PEERS.items():
        t = time.perf_counter()
        key = hashlib.sha256(f"{name}|{test_hours}|{refit_every}|{(HERE / 'peers.py').read_text()}".encode()).hexdigest()[:16]
        cached = CACHE / f"{name}_{peer}_{key}.json"
        try:
            if cached.is_file():  # peers do not change with artq's code: reuse their forecasts
                got = json.loads(cached.read_text())
                values, seconds[peer] = got["values"], got["seconds"]
            else:
                out = fn(frame, target, exog, blocks, SETTINGS.training_days * 24)
                values = [out[h].get(o, np.nan) for o, h in zip(pred["origin"], pred["horizon"], strict=True)]
                seconds[peer] = time.perf_counter() - t
                CACHE.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({"values": values, "seconds": seconds[peer]}))
            pred[peer] = np.asarray(values, dtype=float)
        except Exception as exc:  # a peer that fails is reported, not hidden
            print(f"  {peer} failed on {name}: {type(exc).__name__}: {exc}", flush=True)
            pred[peer] = np.nan
            seconds[peer] = time.perf_counter() - t


def warm_peers(name: str, frame: pd.DataFrame, target: str, test_hours: int, refit_every: int) -> None:
    """Compute (and cache) the peers' forecasts without running artq."""
    origins = backtest_origins(frame.index, test_hours)
    pred = pd.DataFrame([(o, h) for o in origins for h in range(1, 7)], columns=["origin", "horizon"])
    seconds: dict = {}
    peer_forecasts(name, frame, target, test_hours, refit_every, pred, seconds)
    print(f"{name}: peers " + ", ".join(f"{k} {v:.0f}s" for k, v in seconds.items()), flush=True)


def run_one(name: str, frame: pd.DataFrame, target: str, test_hours: int, refit_every: int, peers: bool) -> dict:
    exog = [c for c in frame.columns if c != target]
    t = time.perf_counter()
    report = backtest_frame(frame, target, exog, test_hours, refit_every, settings=SETTINGS)
    seconds = {"artq": time.perf_counter() - t}
    pred = report.predictions.copy()
    if peers:
        peer_forecasts(name, frame, target, test_hours, refit_every, pred, seconds)
    models = ["artq", *NAIVE, *([*PEERS] if peers else [])]
    res = {m: score(pred, m, report.scale) for m in models}
    d = report.as_dict()
    res["artq"]["coverage"] = d["coverage"]
    res["artq"]["coverage_by_h"] = [d["horizons"][str(h)]["coverage"] for h in range(1, 7)]
    others = {m: r["mae"] for m, r in res.items() if m != "artq" and np.isfinite(r["mae"])}
    best = min(others, key=others.get)
    naive = min(NAIVE, key=lambda m: res[m]["mae"])
    return {"dataset": name, "target": target, "exog": exog[:8] + (["..."] if len(exog) > 8 else []),
            "inputs_used": d["inputs_used"], "rows": len(frame), "test_hours": test_hours, "refit_every": refit_every,
            "models": res, "best_other": best, "artq_vs_best": res["artq"]["mae"] / others[best] - 1,
            "best_naive": naive, "artq_vs_naive": res["artq"]["mae"] / res[naive]["mae"], "seconds": seconds}


def train_speed(frame: pd.DataFrame) -> dict:
    from artq.forecasting import train_bundle

    t, c = time.perf_counter(), time.process_time()
    train_bundle(frame, "art", ForecastSettings(training_days=365, seed=0), tune=False)
    return {"rows": len(frame), "columns": frame.shape[1], "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}


SHORT_NAMES = {"artq": "artq", "last_value": "last", "seasonal_naive_24": "snaive24", "seasonal_naive_168": "snaive168",
               "skforecast_direct": "skforecast", "mlforecast_direct": "mlforecast", "statsforecast_mstl": "MSTL"}


def _gm(x) -> float:
    x = np.asarray([v for v in x if np.isfinite(v) and v > 0], dtype=float)
    return float(np.exp(np.mean(np.log(x)))) if len(x) else float("nan")


def markdown(results: list[dict], speed: dict | None, meta: dict) -> str:
    models = list(results[0]["models"])
    short = SHORT_NAMES
    lines = [f"Run {meta['started']} on {meta['host']}: `{meta['command']}`", "",
             "Mean MAE over horizons 1..6 (lower is better); **bold** = best; `artq ÷ best` = artq's MAE over the "
             "best other model's; `÷ naive` = over the best of the three naive forecasts; coverage of artq's 80 % interval.", "",
             "| dataset | rows | origins | " + " | ".join(short[m] for m in models)
             + " | artq ÷ best (model) | artq ÷ naive | coverage | inputs used |",
             "|---|---:|---:|" + "---:|" * len(models) + "---:|---:|---:|---|"]
    for r in results:
        maes = {m: r["models"][m]["mae"] for m in models}
        best = min((v for v in maes.values() if np.isfinite(v)), default=np.nan)
        cells = [(f"**{v:.4g}**" if v == best else f"{v:.4g}") if np.isfinite(v) else "fail" for v in maes.values()]
        used = ", ".join(r.get("inputs_used") or []) or "-"
        lines.append(f"| {r['dataset']} | {r['rows']} | {r['test_hours']} | " + " | ".join(cells)
                     + f" | {1 + r['artq_vs_best']:.3f} ({short[r['best_other']]}) | {r['artq_vs_naive']:.3f} "
                     f"| {r['models']['artq']['coverage']:.1%} | {used} |")
    rel = np.array([1 + r["artq_vs_best"] for r in results])
    vs_naive = np.array([r["artq_vs_naive"] for r in results])
    cov = np.array([r["models"]["artq"]["coverage"] for r in results])
    worst = results[int(np.argmax(vs_naive))]["dataset"]
    in_band = int(((cov >= 0.75) & (cov <= 0.85)).sum())
    lines += ["", "**Goals of issue 11**", "",
              f"- Geometric mean of artq ÷ the per-dataset best other model: **{_gm(rel):.3f}** (goal ≤ 0.95); "
              f"artq is the best on {int((rel < 1).sum())}/{len(rel)} datasets.",
              f"- Worst dataset's artq ÷ best naive forecast: **{vs_naive.max():.3f}** on {worst} (goal ≤ 1.0); "
              f"artq at or below the best naive on {int((vs_naive <= 1.0).sum())}/{len(vs_naive)} datasets; geometric mean {_gm(vs_naive):.3f}.",
              f"- Coverage of the 80 % interval within 75–85 %: **{in_band}/{len(cov)}** datasets "
              f"({in_band / len(cov):.0%}; goal ≥ 90 %); mean {cov.mean():.1%}, range {cov.min():.1%}..{cov.max():.1%}."]
    lines += ["", "artq's MAE ÷ each model's, geometric mean over the datasets, and the number of datasets where artq "
              "is better:", "", "| vs | all datasets | real data | simulator |", "|---|---:|---:|---:|"]
    for m in models[1:]:
        cells = []
        for subset in (results, [r for r in results if not r["dataset"].startswith("sim_")],
                       [r for r in results if r["dataset"].startswith("sim_")]):
            ratio = [r["models"]["artq"]["mae"] / r["models"][m]["mae"] for r in subset
                     if np.isfinite(r["models"][m]["mae"]) and r["models"][m]["mae"] > 0]
            cells.append(f"{_gm(ratio):.3f} ({sum(x < 1 for x in ratio)}/{len(ratio)})" if ratio else "-")
        lines.append(f"| {short[m]} | " + " | ".join(cells) + " |")
    lines += ["", "Per horizon: artq's MAE ÷ the best other model's at that horizon (and ÷ the best naive forecast's):", "",
              "| dataset | " + " | ".join(f"h{h}" for h in range(1, 7)) + " |", "|---|" + "---:|" * 6]
    per_h_best, per_h_naive = [[] for _ in range(6)], [[] for _ in range(6)]
    for r in results:
        cells = []
        for h in range(6):
            a = r["models"]["artq"]["mae_by_h"][h]
            others = [r["models"][m]["mae_by_h"][h] for m in models[1:] if np.isfinite(r["models"][m]["mae_by_h"][h])]
            naive = min(r["models"][m]["mae_by_h"][h] for m in NAIVE)
            per_h_best[h].append(a / min(others))
            per_h_naive[h].append(a / naive)
            cells.append(f"{a / min(others):.2f} ({a / naive:.2f})")
        lines.append(f"| {r['dataset']} | " + " | ".join(cells) + " |")
    lines.append("| **geometric mean** | " + " | ".join(f"**{_gm(b):.3f}** ({_gm(n):.3f})"
                                                     for b, n in zip(per_h_best, per_h_naive, strict=True)) + " |")
    lines += ["", "artq's interval coverage per horizon (nominal 80 %):", "",
              "| dataset | " + " | ".join(f"h{h}" for h in range(1, 7)) + " |", "|---|" + "---:|" * 6]
    for r in results:
        lines.append(f"| {r['dataset']} | " + " | ".join(f"{c:.0%}" if c is not None else "-"
                                                          for c in r["models"]["artq"]["coverage_by_h"]) + " |")
    if speed:
        when = f" (measured {meta['speed_measured']})" if meta.get("speed_measured") else ""
        lines += ["", f"- Training six models on a year of simulated hourly data ({speed['rows']} rows x {speed['columns']} "
                  f"columns, no tuning): {speed['wall_s']:.1f} s wall, {speed['cpu_s']:.1f} s CPU{when}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated dataset names")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--sim-seeds", default="1,2,3")
    ap.add_argument("--sim-days", type=int, default=120)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--report-only", action="store_true", help="rewrite results.md from results.json")
    ap.add_argument("--speed-only", action="store_true", help="re-measure the training time into results.json")
    ap.add_argument("--peers-only", action="store_true", help="only compute and cache the peers' forecasts")
    a = ap.parse_args()
    if a.report_only or a.speed_only:
        saved = json.loads((Path(a.out) / "results.json").read_text())
        if a.speed_only:  # re-measure the year-of-data training time only
            saved["speed"] = train_speed(simulator_frame(7, 365))
            saved["meta"]["speed_measured"] = datetime.now(UTC).isoformat(timespec="seconds")
            (Path(a.out) / "results.json").write_text(json.dumps(saved, indent=1, default=float))
        (Path(a.out) / "results.md").write_text(markdown(saved["results"], saved["speed"], saved["meta"]))
        print((Path(a.out) / "results.md").read_text())
        return
    only = {s for s in a.only.split(",") if s}
    meta = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "host": "2-core bench machine",
            "command": "bench/.venv/bin/python bench/forecast/" + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    jobs = []
    for name, spec in real_datasets().items():
        if not only or name in only:
            jobs.append((name, lambda s=spec: load_csv(s["csv"], s["target"], s["exog"]), spec["target"], spec["test_hours"], spec["refit_every"]))
    for seed in [int(s) for s in a.sim_seeds.split(",") if s]:
        name = f"sim_seed{seed}"
        if not only or name in only:
            jobs.append((name, lambda s=seed: simulator_frame(s, a.sim_days), "art", 336, 168))
    results = []
    for name, load, target, test_hours, refit_every in jobs:
        frame = load()
        if frame is None:
            print(f"{name}: simulator not available, skipped", flush=True)
            continue
        if a.peers_only:
            warm_peers(name, frame, target, test_hours, refit_every)
            continue
        r = run_one(name, frame, target, test_hours, refit_every, not a.no_peers)
        results.append(r)
        print(f"{name}: " + ", ".join(f"{m} {v['mae']:.4g}" for m, v in r["models"].items())
              + f" | artq vs best {r['artq_vs_best']:+.1%} | cov {r['models']['artq']['coverage']:.1%}"
              + f" | {', '.join(f'{k} {v:.0f}s' for k, v in r['seconds'].items())}", flush=True)
    if a.peers_only:
        return
    speed = None
    if not a.no_speed:
        year = simulator_frame(7, 365)
        speed = train_speed(year) if year is not None else None
        print(f"speed: {speed}", flush=True)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "speed": speed, "results": results}, indent=1, default=float))
    (out / "results.md").write_text(markdown(results, speed, meta))
    print(markdown(results, speed, meta))


if __name__ == "__main__":
    main()
