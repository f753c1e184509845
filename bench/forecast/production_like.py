"""A generated series shaped like the evaluation data of issue 11, to check the guardrail on it.

    nice -n 10 .venv/bin/python bench/forecast/production_like.py

Four weeks of hourly latency: a baseline drifting 25 % down over the month (plus a small random
walk), a daily cycle, one hour at 14x the median four days before the end, one missing hour,
30 irrelevant dependency latencies, one constant input and one dependency that moves with load.
Rolling-origin backtest of the last 72 hours, refit every 24 h, three seeds.
"""

import numpy as np, pandas as pd
from artq.forecasting.backtest import backtest_frame
from artq.config import ForecastSettings
out = []
for seed in range(3):
    rng = np.random.default_rng(seed)
    n = 24 * 28
    idx = pd.date_range("2026-03-02", periods=n, freq="h", tz="UTC")
    drift = np.linspace(0, np.log(0.75), n) + np.cumsum(rng.normal(0, 0.01, n))
    daily = 0.15 * np.sin(2 * np.pi * (idx.hour.to_numpy() - 9) / 24)
    dep = {f"dep{i}_latency": 20 * np.exp(rng.normal(0, 0.2, n)) for i in range(30)}  # irrelevant
    load = np.exp(daily + rng.normal(0, 0.05, n))
    dep["dep_db_latency"] = 10 * np.exp(0.5 * np.maximum(load - 1, 0) + rng.normal(0, 0.05, n))
    dep["flat"] = np.full(n, 3.0)
    y = 400 * np.exp(drift + daily + rng.normal(0, 0.06, n)) + 2 * dep["dep_db_latency"]
    med = np.median(y)
    y[n - 24 * 4 - 5] = 14 * med  # one hour at 14x, shortly before the test window
    y[n - 24 * 2] = np.nan  # a missing hour
    f = pd.DataFrame({"art": y, **dep}, index=idx)
    r = backtest_frame(f, "art", "auto", test_hours=24 * 3, refit_every=24,
                       settings=ForecastSettings(training_days=90, min_training_hours=168, seed=0))
    m = r.metrics
    out.append((seed, m["artq"]["mean_mae"], m["last_value"]["mean_mae"], m["seasonal_naive_24"]["mean_mae"], m["artq"]["coverage"], r.inputs_used))
for o in out: print(o)
