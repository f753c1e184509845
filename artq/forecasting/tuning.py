"""Time-ordered model selection for one horizon: target transform, then hyper-parameters.

Rows are origins in time order. The last ``val_fraction`` of them are the *validation* rows;
the fit rows are the earlier ones whose target hour ``t0 + h`` is at or before the first
validation origin (a purge of ``h`` rows, so no fit target lies inside the validation period).
Early stopping uses a second, inner holdout carved the same way from the end of the fit rows,
so the validation rows score a model that never saw them, and their residuals calibrate the
intervals. Never a random split.

Budget per horizon: one fit per candidate transform (at most 6) with the default parameters,
then ``trials`` random parameter sets (seeded) with the chosen transform, each one fit; all on
the most recent ``SELECTION_ROWS`` origins (90 days, the default training window), so
selection costs the same for a year of history as for three months. The final model is refitted
on the whole window.
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
    "max_bin": 64,
}
MAX_ROUNDS = 800
SELECTION_ROWS = 24 * 90  # model selection looks at the most recent 90 days of origins at most
EARLY_STOPPING = 40
MIN_FIT_ROWS = 24  # a transform with fewer rows to learn from is not fitted
NTHREAD: int | None = None  # None: decided per fit by `_threads`


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
    fit_end: pd.Timestamp  # last target hour the model was fitted on
    es_start: pd.Timestamp  # first early-stopping origin
    val_start: pd.Timestamp  # first validation origin


@dataclass
class Member:
    """One model of a horizon's blend: its target transform, parameters and boosting rounds."""

    transform: TargetTransform
    params: dict
    n_rounds: int


@dataclass
class Selection:
    members: list[Member]  # one model, or the two best transforms averaged when that validates better
    val_mae: float
    val_positions: np.ndarray
    val_pred: np.ndarray  # forecasts for the validation rows, original units
    val_scaled_residuals: np.ndarray  # s(y) - s(ŷ) on the validation rows
    trials: list[Trial] = field(default_factory=list)


def _threads(n_rows: int) -> int:
    """XGBoost threads: one per 1500 rows, at most the cores left idle by the load average.
    (On a busy machine, extra OpenMP threads spin and wait: measured 15x slower with 2 threads
    than with 1 on a loaded 2-core host.)"""
    if NTHREAD is not None:
        return NTHREAD
    cores = os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(cores, int(idle + 0.5), n_rows // 1500))


def _matrix(X: pd.DataFrame, names: bool = False) -> xgb.DMatrix:
    """A DMatrix of feature rows (labels set later, so one matrix serves every candidate)."""
    data = X.to_numpy(dtype=np.float32)
    return xgb.DMatrix(data, feature_names=list(X.columns) if names else None, nthread=_threads(len(X)))


def _set_target(dm: xgb.DMatrix, z: np.ndarray) -> None:
    ok = np.isfinite(z)
    dm.set_label(np.where(ok, z, 0.0))
    dm.set_weight(ok.astype(np.float32))  # rows without a target (missing base) weigh nothing


def _train(dtrain: xgb.DMatrix, params: dict, seed: int, rounds: int, des: xgb.DMatrix | None = None) -> xgb.Booster:
    p = {**params, "seed": seed, "nthread": _threads(dtrain.num_row()), "verbosity": 0}
    if rounds == 0:  # the naive member: no trees, predicts a zero difference, i.e. the base itself
        return xgb.train({**p, "base_score": 0.0}, dtrain, num_boost_round=0)
    if des is None:
        return xgb.train(p, dtrain, num_boost_round=rounds)
    return xgb.train(p, dtrain, num_boost_round=rounds, evals=[(des, "es")],
                     early_stopping_rounds=EARLY_STOPPING, verbose_eval=False)


def fit_final(X: pd.DataFrame, y: np.ndarray, transform: TargetTransform, target: str,
              params: dict, n_rounds: int, seed: int) -> xgb.Booster:
    z = transform.encode(y, X, target)
    ok = np.isfinite(z)
    dm = _matrix(X[ok], names=True)
    dm.set_label(z[ok])
    return _train(dm, params, seed, n_rounds)


class _Splits:
    """Fit / early-stopping / validation rows of one horizon, their matrices built once."""

    def __init__(self, X: pd.DataFrame, horizon: int, val_fraction: float = 0.2) -> None:
        offset = max(0, len(X) - SELECTION_ROWS)
        fit, val = time_split(X.index[offset:], horizon, val_fraction)
        fit, self.val = fit + offset, val + offset
        inner_fit, inner_es = time_split(X.index[fit], horizon, 0.15)
        self.fit, self.es = fit[inner_fit], fit[inner_es]
        if len(self.fit) == 0 or len(self.es) == 0:
            raise ValueError(f"`X` has too few rows ({len(X)}) to split into fit, early-stopping and validation rows.")
        self.X, self.horizon = X, horizon
        self.d_fit, self.d_es, self.d_val = (_matrix(X.iloc[rows]) for rows in (self.fit, self.es, self.val))

    def evaluate(self, y: np.ndarray, transform: TargetTransform, target: str, params: dict,
                 seed: int, naive: bool = False) -> tuple[Trial, np.ndarray, np.ndarray] | None:
        """Fit on the fit rows (early stopping on the inner holdout), score on the validation rows.
        ``naive``: no model at all, the forecast is the transform's base (persistence, 7-day
        same-hour mean, seasonal naive 168), so validation can prefer it, or blend with it."""
        X = self.X
        X_val, y_val = X.iloc[self.val], y[self.val]
        if naive:
            n_rounds, m, params = 0, np.zeros(len(self.val)), {}
        else:
            for dm, rows in ((self.d_fit, self.fit), (self.d_es, self.es)):
                z = transform.encode(y[rows], X.iloc[rows], target)
                if np.isfinite(z).sum() < MIN_FIT_ROWS:
                    return None  # e.g. a weekly base on two weeks of data: only its naive form competes
                _set_target(dm, z)
            booster = _train(self.d_fit, params, seed, MAX_ROUNDS, self.d_es)
            n_rounds = int(booster.best_iteration) + 1
            m = booster.predict(self.d_val, iteration_range=(0, n_rounds))
        scaled = transform.to_scaled(m, X_val, target)
        pred = transform.inv(scaled)
        mae = float(np.nanmean(np.abs(y_val - pred)))
        trial = Trial(transform.name, params, n_rounds, mae, X.index[self.fit[-1]] + pd.Timedelta(hours=self.horizon),
                      X.index[self.es[0]], X.index[self.val[0]])
        return trial, pred, transform.fwd(y_val) - scaled


def select(X: pd.DataFrame, y: np.ndarray, horizon: int, target: str, candidates: list[TargetTransform],
           trials: int, seed: int, progress: Callable[[str], None] | None = None) -> Selection:
    """Choose the transform (default parameters), then ``trials`` random parameter sets.

    The naive forecasts (each non-level base on its own: persistence, 7-day same-hour mean, same
    hour last week) compete too and may be the blend partner; they cost no fit.
    """
    if trials < 0:
        raise ValueError(f"`trials` must be >= 0. Got {trials}.")
    splits = _Splits(X, horizon)
    best: tuple | None = None
    records: list[Trial] = []
    cand_preds = []
    naive = {tr.base: tr for tr in candidates if tr.base != "level"}  # one per base, first scale
    jobs = [(tr, False) for tr in candidates] + [(tr, True) for tr in naive.values()]
    for tr, is_naive in jobs:
        got = splits.evaluate(y, tr, target, DEFAULT_PARAMS, seed, naive=is_naive)
        if progress and not is_naive:
            progress(f"h{horizon} transform {tr.name}")
        if got is None:
            continue
        trial, pred, res = got
        records.append(trial)
        cand_preds.append(pred)
        if best is None or trial.val_mae < best[0].val_mae:
            best = (trial, pred, res, tr)
    n_candidates = len(records)
    assert best is not None
    rng = np.random.default_rng(seed * 1000 + horizon)
    for _ in range(trials if best[0].n_rounds > 0 else 0):  # nothing to tune in a naive forecast
        params = sample_params(rng)
        got = splits.evaluate(y, best[3], target, params, seed)
        if got is None:
            continue
        trial, pred, res = got
        records.append(trial)
        if trial.val_mae < best[0].val_mae:
            best = (trial, pred, res, best[3])
        if progress:
            progress(f"h{horizon} trial")
    trial, pred, res, tr = best
    members = [Member(tr, dict(trial.params), trial.n_rounds)]
    # a blend of the two best transforms (each with its own early-stopped rounds), kept only
    # when it beats the best single model on the same validation rows
    others = [(t, p) for t, p in zip(records[:n_candidates], cand_preds, strict=True)
              if (t.transform, t.n_rounds == 0) != (tr.name, trial.n_rounds == 0)]
    y_val = y[splits.val]
    if others:
        t2, p2 = min(others, key=lambda tp: tp[0].val_mae)
        blend = (pred + p2) / 2
        blend_mae = float(np.nanmean(np.abs(y_val - blend)))
        if blend_mae < trial.val_mae:
            members.append(Member(TargetTransform.from_name(t2.transform), dict(t2.params), t2.n_rounds))
            pred = blend
            res = tr.fwd(y_val) - tr.fwd(blend)
    return Selection(members, float(np.nanmean(np.abs(y_val - pred))), splits.val, pred, res, records)
