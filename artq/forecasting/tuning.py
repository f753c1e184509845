"""Time-ordered model selection for one horizon: target transform, then hyper-parameters.

Rows are origins in time order. The last ``val_fraction`` of them are the *validation* rows;
the fit rows are the earlier ones whose target hour ``t0 + h`` is at or before the first
validation origin (a purge of ``h`` rows, so no fit target lies inside the validation period).
Early stopping uses a second, inner holdout carved the same way from the end of the fit rows,
so the validation rows score a model that never saw them, and their residuals calibrate the
intervals. Never a random split.

Budget per horizon: one fit per candidate transform (at most 6) with the default parameters,
then ``trials`` random parameter sets (seeded) with the chosen transform, each one fit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from artq.forecasting.transforms import TargetTransform

DEFAULT_PARAMS: dict = {
    "objective": "reg:squarederror",
    "tree_method": "hist",
    "max_depth": 5,
    "eta": 0.06,
    "subsample": 0.8,
    "colsample_bytree": 0.7,
    "min_child_weight": 5.0,
    "lambda": 1.0,
    "max_bin": 128,
}
MAX_ROUNDS = 800
EARLY_STOPPING = 40
NTHREAD: int | None = None  # None: one thread per 4000 rows (threads cost more than they give on small data)


def sample_params(rng: np.random.Generator) -> dict:
    """One random draw from the search space (log-uniform where the scale matters)."""
    return {
        **DEFAULT_PARAMS,
        "max_depth": int(rng.integers(3, 9)),
        "eta": float(np.exp(rng.uniform(np.log(0.02), np.log(0.2)))),
        "subsample": float(rng.uniform(0.6, 1.0)),
        "colsample_bytree": float(rng.uniform(0.4, 1.0)),
        "min_child_weight": float(np.exp(rng.uniform(np.log(1.0), np.log(30.0)))),
        "lambda": float(np.exp(rng.uniform(np.log(0.1), np.log(20.0)))),
        "objective": str(rng.choice(["reg:squarederror", "reg:pseudohubererror"])),
    }


def time_split(index: pd.DatetimeIndex, horizon: int, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of (fit rows, validation rows): every fit target hour <= first validation origin."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1). Got {val_fraction}.")
    n = len(index)
    n_val = max(1, int(round(n * val_fraction)))
    val = np.arange(n - n_val, n)
    first_val = index[val[0]]
    fit_ok = index + pd.Timedelta(hours=horizon) <= first_val
    fit = np.flatnonzero(np.asarray(fit_ok))
    fit = fit[fit < val[0]]
    return fit, val


@dataclass
class Trial:
    transform: str
    params: dict
    n_rounds: int
    val_mae: float
    fit_end: pd.Timestamp  # last fit row's target hour
    val_start: pd.Timestamp  # first validation origin


@dataclass
class Selection:
    transform: TargetTransform
    params: dict
    n_rounds: int
    val_mae: float
    val_positions: np.ndarray
    val_pred: np.ndarray  # forecasts for the validation rows, original units
    val_scaled_residuals: np.ndarray  # s(y) - s(ŷ) on the validation rows
    trials: list[Trial] = field(default_factory=list)


def _fit(X: pd.DataFrame, z: np.ndarray, params: dict, seed: int, rounds: int,
         X_es: pd.DataFrame | None = None, z_es: np.ndarray | None = None) -> xgb.Booster:
    dtrain = xgb.DMatrix(X, label=z, feature_names=list(X.columns))
    threads = NTHREAD if NTHREAD is not None else min(os.cpu_count() or 1, max(1, len(X) // 4000))
    p = {**params, "seed": seed, "nthread": threads, "verbosity": 0}
    if X_es is None:
        return xgb.train(p, dtrain, num_boost_round=rounds)
    des = xgb.DMatrix(X_es, label=z_es, feature_names=list(X.columns))
    return xgb.train(p, dtrain, num_boost_round=rounds, evals=[(des, "es")],
                     early_stopping_rounds=EARLY_STOPPING, verbose_eval=False)


def fit_final(X: pd.DataFrame, y: np.ndarray, transform: TargetTransform, target: str,
              params: dict, n_rounds: int, seed: int) -> xgb.Booster:
    z = transform.encode(y, X, target)
    ok = np.isfinite(z)
    return _fit(X[ok], z[ok], params, seed, n_rounds)


def evaluate(X: pd.DataFrame, y: np.ndarray, horizon: int, transform: TargetTransform, target: str,
             params: dict, seed: int, val_fraction: float = 0.2) -> tuple[Trial, np.ndarray, np.ndarray, xgb.Booster]:
    """Fit on the fit rows (early stopping on an inner time-ordered holdout), score on validation."""
    fit, val = time_split(X.index, horizon, val_fraction)
    X_fit, y_fit = X.iloc[fit], y[fit]
    inner_fit, inner_es = time_split(X_fit.index, horizon, 0.15)
    z = transform.encode(y_fit, X_fit, target)
    a, b = inner_fit[np.isfinite(z[inner_fit])], inner_es[np.isfinite(z[inner_es])]
    booster = _fit(X_fit.iloc[a], z[a], params, seed, MAX_ROUNDS, X_fit.iloc[b], z[b])
    n_rounds = int(booster.best_iteration) + 1
    X_val = X.iloc[val]
    m = booster.predict(xgb.DMatrix(X_val, feature_names=list(X.columns)), iteration_range=(0, n_rounds))
    scaled = transform.to_scaled(m, X_val, target)
    pred = transform.inv(scaled)
    y_val = y[val]
    mae = float(np.nanmean(np.abs(y_val - pred)))
    trial = Trial(transform.name, params, n_rounds, mae,
                  X_fit.index[fit[-1] if len(fit) else 0] + pd.Timedelta(hours=horizon), X.index[val[0]])
    return trial, pred, transform.fwd(y_val) - scaled, booster


def select(X: pd.DataFrame, y: np.ndarray, horizon: int, target: str, candidates: list[TargetTransform],
           trials: int, seed: int, progress: Callable[[str], None] | None = None) -> Selection:
    """Choose the transform (default parameters), then ``trials`` random parameter sets."""
    if trials < 0:
        raise ValueError(f"`trials` must be >= 0. Got {trials}.")
    best: tuple | None = None
    records: list[Trial] = []
    for tr in candidates:
        trial, pred, res, _ = evaluate(X, y, horizon, tr, target, DEFAULT_PARAMS, seed)
        records.append(trial)
        if best is None or trial.val_mae < best[0].val_mae:
            best = (trial, pred, res, tr)
        if progress:
            progress(f"h{horizon} transform {tr.name}")
    assert best is not None
    rng = np.random.default_rng(seed * 1000 + horizon)
    for _ in range(trials):
        params = sample_params(rng)
        trial, pred, res, _ = evaluate(X, y, horizon, best[3], target, params, seed)
        records.append(trial)
        if trial.val_mae < best[0].val_mae:
            best = (trial, pred, res, best[3])
        if progress:
            progress(f"h{horizon} trial")
    trial, pred, res, tr = best
    _, val = time_split(X.index, horizon, 0.2)
    return Selection(tr, dict(trial.params), trial.n_rounds, trial.val_mae, val, pred, res, records)
