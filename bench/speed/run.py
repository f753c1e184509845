"""Training and live-prediction speed of artq's six horizon models, in one run.

    nice -n 10 bench/.venv/bin/python bench/speed/run.py                 # both, ~1-2 min
    nice -n 10 bench/.venv/bin/python bench/speed/run.py --skip-train    # prediction only

Data: a year of the simulator's hourly series for one application (8,760 rows, 48 series: the
main server's ART is the target, the other 47 series are inputs), as in bench/forecast.

- **Training**: ``train_bundle(..., tune=False)`` with ``training_days=365`` (the issue's
  "six models on a year"), then skforecast 0.26 ``ForecasterDirect`` (6 steps) on the same
  frame (lags 1..24 and 168, all 47 inputs lagged 6 h), in the same process right after, twice:
  with artq's XGBoost defaults (objective, depth, eta, rounds = artq's per-fold cap, hist, 64
  bins, one thread) and with bench/forecast's peer settings (300 trees, depth 5, squared error:
  the issue's "about 11-13 s" reference). Wall and CPU seconds, ``--repeat`` times each (median).
- **Live prediction** (in-process, from a loaded frame): ``ModelBundle.predict_all(frame, origin)``
  — features for the origin and the recent origins of the conformal window, six horizons,
  intervals and drivers — at ``--origins`` different origins; the median. Then the same with the
  fleet's function ``predict_many`` for one application and its six prepared feature rows (what a
  live cycle runs per application once the batch loader built the rows), with its drivers and
  without them (``drivers=False``: the drivers computed separately, on demand), and the time to
  build one origin's six feature rows from the frame. The reference is XGBoost itself:
  ``Booster.inplace_predict`` of the same six (primary) boosters on one prepared row.

Results go to bench/speed/results.json and are printed; bench/speed/README.md has the latest.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "forecast"))

from run import simulator_frame  # bench/forecast/run.py

from artq.config import ForecastSettings
from artq.forecasting import train_bundle
from artq.forecasting.batch import predict_many
from artq.forecasting.tuning import DEFAULT_PARAMS, MAX_ROUNDS


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def skforecast_fit(frame: pd.DataFrame, settings: str = "artq") -> None:
    """``settings="artq"``: artq's XGBoost defaults; ``"peers"``: bench/forecast's peer settings
    (300 trees, depth 5, squared error: the issue's 11-13 s reference)."""
    from skforecast.direct import ForecasterDirect
    from xgboost import XGBRegressor

    if settings == "peers":
        from peers import XGB  # bench/forecast/peers.py

        reg = XGBRegressor(**XGB)
    else:
        p = DEFAULT_PARAMS
        reg = XGBRegressor(objective=p["objective"], max_depth=p["max_depth"], learning_rate=p["eta"],
                           subsample=p["subsample"], colsample_bytree=p["colsample_bytree"],
                           min_child_weight=p["min_child_weight"], reg_lambda=p["lambda"], tree_method="hist",
                           max_bin=p["max_bin"], n_estimators=MAX_ROUNDS, n_jobs=1, random_state=0, verbosity=0)
    y = frame["art"].ffill().bfill()
    y.index.freq = "h"
    exog = frame.drop(columns="art").shift(6).ffill().bfill()
    exog.index.freq = "h"
    ForecasterDirect(reg, steps=6, lags=list(range(1, 25)) + [168], n_jobs=1).fit(y, exog=exog)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--origins", type=int, default=200)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-skforecast", action="store_true")
    a = ap.parse_args()
    frame = simulator_frame(a.seed, 365)
    out: dict = {"measured": datetime.now(UTC).isoformat(timespec="seconds"), "rows": len(frame),
                 "series": frame.shape[1], "load_before": list(__import__("os").getloadavg())}
    s = ForecastSettings(training_days=365, seed=0)
    bundle = None
    if not a.skip_train:
        runs = []
        for _ in range(a.repeat):
            bundle, wall, cpu = timed(lambda: train_bundle(frame, "art", s, tune=False))
            runs.append((wall, cpu))
            print(f"artq train: {wall:.2f} s wall, {cpu:.2f} s CPU; inputs used {bundle.exog}", flush=True)
        out["artq_train_wall_s"] = statistics.median(r[0] for r in runs)
        out["artq_train_cpu_s"] = statistics.median(r[1] for r in runs)
        out["artq_train_runs"] = runs
        out["artq_inputs_used"] = bundle.exog
        out["artq_choices"] = {h: bundle.metrics_["horizons"][str(h)]["choice"] for h in range(1, 7)}
        if not a.skip_skforecast:
            for variant in ("artq", "peers"):
                runs = []
                for _ in range(a.repeat):
                    _, wall, cpu = timed(lambda v=variant: skforecast_fit(frame, v))
                    runs.append((wall, cpu))
                    print(f"skforecast ForecasterDirect fit ({variant} XGBoost settings): {wall:.2f} s wall, "
                          f"{cpu:.2f} s CPU", flush=True)
                out[f"skforecast_{variant}_fit_wall_s"] = statistics.median(r[0] for r in runs)
                out[f"skforecast_{variant}_fit_cpu_s"] = statistics.median(r[1] for r in runs)
                out[f"skforecast_{variant}_runs"] = runs
    if bundle is None:
        bundle = train_bundle(frame.iloc[: -24 * 14], "art", ForecastSettings(training_days=90, seed=0))
    for boosters in bundle.boosters_.values():  # as the workers run them (artq.pipeline.runtime)
        for b in boosters:
            b.set_param({"nthread": 1})
    end = pd.Timestamp(bundle.training_window_["end"])
    candidates = frame.index[(frame.index > end) & (frame.index <= frame.index[-1])]
    if len(candidates) < a.origins:  # trained on the whole year: re-train on all but the last weeks
        bundle = train_bundle(frame.iloc[: -24 * 14], "art", ForecastSettings(training_days=90, seed=0))
        for boosters in bundle.boosters_.values():
            for b in boosters:
                b.set_param({"nthread": 1})
        end = pd.Timestamp(bundle.training_window_["end"])
        candidates = frame.index[frame.index > end]
    rng = np.random.default_rng(0)
    origins = sorted(rng.choice(candidates[48:], size=min(a.origins, len(candidates) - 48), replace=False))
    bundle.predict_all(frame, origins[0].to_pydatetime())  # warm-up (caches)
    per_call, per_call_nd, cpu_nd = [], [], []
    for o in origins:
        t = time.perf_counter()
        bundle.predict_all(frame, o.to_pydatetime())
        per_call.append(time.perf_counter() - t)
    for o in origins:
        t, c = time.perf_counter(), time.process_time()
        bundle.predict_all(frame, o.to_pydatetime(), drivers=False)
        per_call_nd.append(time.perf_counter() - t)
        cpu_nd.append(time.process_time() - c)
    rows, building = {}, []
    for o in origins:
        t = time.perf_counter()
        rows[o] = bundle.builder.transform_at(frame, pd.DatetimeIndex([o]), range(1, 7))
        building.append(time.perf_counter() - t)
    many, lean = [], []
    for o in origins:
        X = rows[o]
        t = time.perf_counter()
        for h in range(1, 7):
            predict_many([bundle], X[h], h)
        many.append(time.perf_counter() - t)
    for o in origins:
        X = rows[o]
        t = time.perf_counter()
        for h in range(1, 7):
            predict_many([bundle], X[h], h, drivers=False)
        lean.append(time.perf_counter() - t)
    raw = []
    for o in origins:
        arrays = {h: rows[o][h].to_numpy() for h in range(1, 7)}
        t = time.perf_counter()
        for h in range(1, 7):
            bundle.boosters_[h][0].inplace_predict(arrays[h], validate_features=False)
        raw.append(time.perf_counter() - t)
    out.update({
        "origins": len(origins), "predict_members": {h: [m.transform.name + ("" if m.n_rounds else "(naive)")
                                                         for m in bundle.members_[h]] for h in range(1, 7)},
        "predict_all_median_ms": 1e3 * statistics.median(per_call),
        "predict_all_no_drivers_median_ms": 1e3 * statistics.median(per_call_nd),
        "predict_all_no_drivers_cpu_median_ms": 1e3 * statistics.median(cpu_nd),
        "predict_all_p90_ms": 1e3 * float(np.quantile(per_call, 0.9)),
        "predict_many_6h_median_ms": 1e3 * statistics.median(many),
        "predict_many_6h_no_drivers_median_ms": 1e3 * statistics.median(lean),
        "feature_rows_6h_one_origin_median_ms": 1e3 * statistics.median(building),
        "xgboost_inplace_6_median_ms": 1e3 * statistics.median(raw),
    })
    out["predict_all_vs_xgboost"] = out["predict_all_median_ms"] / out["xgboost_inplace_6_median_ms"]
    out["predict_all_no_drivers_vs_xgboost"] = out["predict_all_no_drivers_median_ms"] / out["xgboost_inplace_6_median_ms"]
    out["predict_many_vs_xgboost"] = out["predict_many_6h_median_ms"] / out["xgboost_inplace_6_median_ms"]
    out["predict_many_no_drivers_vs_xgboost"] = out["predict_many_6h_no_drivers_median_ms"] / out["xgboost_inplace_6_median_ms"]
    out["load_after"] = list(__import__("os").getloadavg())
    print(json.dumps(out, indent=1, default=float))
    (HERE / "results.json").write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
