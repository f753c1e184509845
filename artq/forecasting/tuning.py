"""Model selection for one horizon on several time-ordered folds, with the naive forecasts competing.

Rows are origins in time order (only those whose target hour is known). The most recent
``SELECTION_ROWS`` of them are split by scikit-learn's ``TimeSeriesSplit(gap=h)`` into
``N_FOLDS`` folds: each fold's model is fitted on the rows before it, minus a purge of ``h``
rows, so no fitted target hour lies inside the fold it is scored on. Never a random split.

Candidates, simplest first:

1. the naive forecasts — last value, seasonal naive 24 h and 168 h, last value plus the daily
   or last week's shape, the 7-day same-hour median (:mod:`artq.forecasting.transforms`) — which
   cost no fit;
2. a tree model (absolute-error loss: one extreme hour cannot drag it) of the difference to an
   anchored base (``last``, ``sdelta``), then to the best of the other bases on the folds
   (``wdelta``, or ``smed`` / ``weekly``: not anchored), on the target's own history;
3. the best of those with the screened inputs (:mod:`artq.forecasting.screening`);
4. the best model averaged with the best naive forecast.

A richer candidate replaces the current choice only when it wins across the folds: on the rows
where both forecast, its MAE over the current choice's is at least ``MARGIN`` lower on average
over the folds *and* lower on a majority of them. So where a model cannot beat persistence, persistence is what
ships (the guardrail), and a short lucky block cannot promote a model.

After a sustained level shift (:mod:`artq.forecasting.regimes`), only rows of the new level judge
the candidates, and until it is a week old only the naive forecasts compete: the models' inputs
still reach into the old level.

The number of boosting rounds is read off the fold curves (mean MAE over folds per round; each
fold's fit stops early once its curve has not improved for ``EARLY_STOPPING`` rounds).
The out-of-sample residuals of all folds calibrate the conformal intervals.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import xgboost as xgb
from sklearn.model_selection import TimeSeriesSplit

from artq.forecasting.transforms import BaseColumns, TargetTransform

DEFAULT_PARAMS: dict = {
    "objective": "reg:absoluteerror",
    "tree_method": "hist",
    "max_depth": 4,
    "eta": 0.15,
    "subsample": 0.8,
    "colsample_bytree": 0.7,
    "min_child_weight": 8.0,
    "lambda": 1.0,
    "max_bin": 64,
}
MAX_ROUNDS = 120
MIN_ROUNDS = 10
# a fold's fit stops when its test MAE has not improved for this many rounds (20 cost 25 % more
# CPU for the same accuracy on bench/forecast: geometric mean of MAE within 0.2 %)
EARLY_STOPPING = 10
SELECTION_ROWS = 24 * 56  # folds cover the most recent 8 weeks of origins at most
N_FOLDS = 3
MIN_FIT_ROWS = 72  # a fold model needs this many rows to learn from
MARGIN = 0.02  # a richer candidate must be 2 % better on average (and win most folds)
MIN_PAIRED_ROWS = 12  # a fold judges two candidates on at least this many rows where both forecast
NTHREAD: int | None = None  # None: decided per fit by `_threads`


def sample_params(rng: np.random.Generator) -> dict:
    """One random draw from the search space (log-uniform where the scale matters)."""
    return {
        **DEFAULT_PARAMS,
        "max_depth": int(rng.integers(2, 7)),
        "eta": float(np.exp(rng.uniform(np.log(0.04), np.log(0.2)))),
        "subsample": float(rng.uniform(0.6, 1.0)),
        "colsample_bytree": float(rng.uniform(0.4, 1.0)),
        "min_child_weight": float(np.exp(rng.uniform(np.log(3.0), np.log(30.0)))),
        "lambda": float(np.exp(rng.uniform(np.log(0.1), np.log(20.0)))),
        "objective": str(rng.choice(["reg:absoluteerror", "reg:pseudohubererror"])),
    }


@dataclass
class Member:
    """One forecast of a horizon's blend: its target transform, parameters and boosting rounds
    (0 rounds: the naive forecast of the transform's base)."""

    transform: TargetTransform
    params: dict
    n_rounds: int
    inputs: bool = False  # the trees may read the screened inputs
    weight: float = 1.0  # share in the horizon's blend (the weights of a blend sum to 1)


@dataclass
class Candidate:
    label: str
    members: list[Member]
    rank: int  # complexity: 0 naive, 1 own-history model, 2 with inputs, 3 blend
    fold_pred: list[np.ndarray]  # per fold, original units
    fold_mae: np.ndarray
    row_err: np.ndarray  # absolute error per fold row (NaN where it has no forecast or the row is not scored)
    score: float = float("nan")


@dataclass
class Selection:
    members: list[Member]
    label: str
    val_positions: np.ndarray  # row positions of all fold test rows, time order
    val_pred: np.ndarray  # forecasts for those rows, original units
    val_scaled_residuals: np.ndarray  # s(y) - s(ŷ) on those rows
    fold_ends: list[int] = field(default_factory=list)  # cumulative row counts per fold
    candidates: list[Candidate] = field(default_factory=list)
    val_mae: float = float("nan")


def _threads(n_rows: int) -> int:
    """XGBoost threads: one per 1500 rows, at most the cores left idle by the load average.
    (On a busy machine, extra OpenMP threads spin and wait: measured 15x slower with 2 threads
    than with 1 on a loaded 2-core host.)"""
    if NTHREAD is not None:
        return NTHREAD
    cores = os.cpu_count() or 1
    idle = cores - os.getloadavg()[0] if hasattr(os, "getloadavg") else cores
    return max(1, min(cores, int(idle + 0.5), n_rows // 1500))


def blank_columns(X: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """``X`` with the hidden columns set to 0: a constant column is never split on, so the trees
    ignore it, whatever value it holds at prediction time."""
    if not hidden.any():
        return X
    X = X.copy()
    X[:, hidden] = 0.0
    return X


def fit_matrix(X: np.ndarray, hidden: np.ndarray, names: list[str] | None = None) -> xgb.DMatrix:
    return xgb.DMatrix(blank_columns(X, hidden).astype(np.float32), feature_names=names,
                       nthread=_threads(len(X)))


def _set_target(dm: xgb.DMatrix, z: np.ndarray) -> None:
    ok = np.isfinite(z)
    dm.set_label(np.where(ok, z, 0.0))
    dm.set_weight(ok.astype(np.float32))  # rows without a base weigh nothing


def clip_range(z: np.ndarray) -> list[float]:
    """The model output's accepted range: the training targets' 0.5th..99.5th percentiles, so a
    forecast never moves further from its base than 99 % of the training hours did (a leaf fitted
    on a few outage hours cannot throw an ordinary hour into outage territory)."""
    z = z[np.isfinite(z)]
    lo, hi = np.percentile(z, [0.5, 99.5]) if len(z) else (-np.inf, np.inf)
    return [float(min(lo, 0.0)), float(max(hi, 0.0))]


def clipped(raw: np.ndarray, params: dict) -> np.ndarray:
    c = params.get("clip")
    return raw if c is None else np.clip(raw, c[0], c[1])


def train_booster(dtrain: xgb.DMatrix, params: dict, seed: int, rounds: int,
                  dtest: xgb.DMatrix | None = None, curve: list | None = None) -> xgb.Booster:
    p = {k: v for k, v in params.items() if k != "clip"}  # ours, not XGBoost's
    p = {**p, "seed": seed, "nthread": _threads(dtrain.num_row()), "verbosity": 0}
    if rounds == 0:  # the naive member: no trees, predicts a zero difference, i.e. the base itself
        return xgb.train({**p, "base_score": 0.0}, dtrain, num_boost_round=0)
    if dtest is None:
        return xgb.train(p, dtrain, num_boost_round=rounds)
    # Early stopping by hand: xgb.train's callback machinery costs about a third as much as the
    # boosting itself on these small fold matrices (measured with cProfile on a year of data).
    booster = xgb.Booster({**p, "eval_metric": "mae"}, [dtrain, dtest])
    maes: list[float] = []
    best = 0
    for i in range(rounds):
        booster.update(dtrain, i)
        maes.append(float(booster.eval_set([(dtest, "t")], i).rsplit(":", 1)[1]))
        if maes[i] < maes[best]:
            best = i
        elif i - best >= EARLY_STOPPING:
            break
    if curve is not None:
        curve.append(np.asarray(maes, dtype=float))
    return booster


def fit_final(X: np.ndarray, y: np.ndarray, member: Member, cols: BaseColumns, hidden: np.ndarray,
              names: list[str], seed: int) -> xgb.Booster:
    """Fit ``member`` on all rows; its ``params["clip"]`` becomes these rows' :func:`clip_range`."""
    z = member.transform.encode(y, X, cols)
    member.params = {**member.params, "clip": clip_range(z)}
    ok = np.isfinite(z)
    dm = fit_matrix(X[ok], hidden, names)
    dm.set_label(z[ok])
    return train_booster(dm, member.params, seed, member.n_rounds)


def folds(n_rows: int, horizon: int, n_folds: int = N_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Time-ordered (fit rows, test rows) over the most recent ``SELECTION_ROWS`` rows, a gap of
    ``horizon`` rows between them; fewer, shorter folds when the history is short."""
    offset = max(0, n_rows - SELECTION_ROWS)
    m = n_rows - offset
    for k in range(n_folds, 0, -1):
        test = min(168, (m - MIN_FIT_ROWS - horizon) // k)
        if test >= 24:
            split = TimeSeriesSplit(n_splits=k, test_size=test, gap=horizon)
            return [(fit + offset, tst + offset) for fit, tst in split.split(np.arange(m))]
    raise ValueError(f"{n_rows} rows are too few for time-ordered folds (at least {MIN_FIT_ROWS + horizon + 24}).")


class FoldData:
    """The folds of one horizon with their matrices built once (labels set per candidate)."""

    def __init__(self, X: np.ndarray, y: np.ndarray, horizon: int, cols: BaseColumns, level: int,
                 exog_cols: np.ndarray, since: int = 0) -> None:
        self.X, self.y, self.cols, self.horizon = X, y, cols, horizon
        self.splits = folds(len(X), horizon)
        # scored: the ordinary hours of the current level regime (rows from `since` on)
        self.scored = [ordinary_hours(y[t]) & ordinary_hours(TargetTransform.inv(X[t, level])) & (t >= since)
                       for _, t in self.splits]
        n_feat = X.shape[1]
        self.hidden_own = np.zeros(n_feat, dtype=bool)
        self.hidden_own[level] = True
        self.hidden_own[exog_cols] = True
        self.hidden_all = np.zeros(n_feat, dtype=bool)
        self.hidden_all[level] = True
        self.has_inputs = len(exog_cols) > 0
        self._mats: dict[tuple[int, bool], tuple[xgb.DMatrix, xgb.DMatrix]] = {}
        self.test_rows = np.concatenate([t for _, t in self.splits])
        self.fold_ends = list(np.cumsum([len(t) for _, t in self.splits]))

    def matrices(self, k: int, inputs: bool) -> tuple[xgb.DMatrix, xgb.DMatrix]:
        key = (k, inputs)
        if key not in self._mats:
            fit, tst = self.splits[k]
            hidden = self.hidden_all if inputs else self.hidden_own
            self._mats[key] = (fit_matrix(self.X[fit], hidden), fit_matrix(self.X[tst], hidden))
        return self._mats[key]

    def naive(self, base: str) -> Candidate:
        tr = TargetTransform("log", base)
        preds = [tr.decode(np.zeros(len(t)), self.X[t], self.cols) for _, t in self.splits]
        return self._candidate(f"naive {base}", [Member(tr, {}, 0)], 0, preds)

    def model(self, base: str, params: dict, seed: int, inputs: bool = False) -> Candidate | None:
        tr = TargetTransform("log", base)
        curves, boosters, clips = [], [], []
        for k, (fit, _) in enumerate(self.splits):
            z = tr.encode(self.y[fit], self.X[fit], self.cols)
            if np.isfinite(z).sum() < MIN_FIT_ROWS:
                return None  # e.g. a weekly base on two weeks of data: only its naive form competes
            clips.append(clip_range(z))
            dfit, dtest = self.matrices(k, inputs)
            _set_target(dfit, z)
            zt = tr.encode(self.y[self.splits[k][1]], self.X[self.splits[k][1]], self.cols)
            _set_target(dtest, zt)
            boosters.append(train_booster(dfit, params, seed, MAX_ROUNDS, dtest, curves))
        length = max(MIN_ROUNDS, min(len(c) for c in curves))  # folds stop early at different rounds
        mean_curve = np.nanmean(np.vstack([np.pad(c[:length], (0, length - len(c[:length])), mode="edge")
                                           for c in curves]), axis=0)
        n_rounds = MIN_ROUNDS + int(np.argmin(mean_curve[MIN_ROUNDS - 1 :]))
        preds = []
        for k, (_, tst) in enumerate(self.splits):
            m = boosters[k].predict(self.matrices(k, inputs)[1], iteration_range=(0, n_rounds))
            preds.append(tr.decode(clipped(m, {"clip": clips[k]}), self.X[tst], self.cols))
        label = f"model {base}" + (" + inputs" if inputs else "")
        return self._candidate(label, [Member(tr, dict(params), n_rounds, inputs)], 2 if inputs else 1, preds)

    def blend(self, a: Candidate, b: Candidate, rank: int = 3) -> Candidate:
        """The average of two forecasts (either may itself be a blend: each keeps half the weight)."""
        preds = [(p + q) / 2 for p, q in zip(a.fold_pred, b.fold_pred, strict=True)]
        halves = [replace(m, weight=m.weight / sum(x.weight for x in c.members) / 2)
                  for c in (a, b) for m in c.members]
        return self._candidate(f"{a.label} & {b.label}", halves, rank, preds)

    def _candidate(self, label: str, members: list[Member], rank: int, preds: list[np.ndarray]) -> Candidate:
        err = [np.where(keep, np.abs(self.y[t] - p), np.nan) for (_, t), p, keep in zip(self.splits, preds, self.scored, strict=True)]
        mae = np.array([float(np.nanmean(e)) if np.isfinite(e).any() else float("nan") for e in err])
        return Candidate(label, members, rank, preds, mae, np.concatenate(err))


EXTREME_SIGMAS = 8.0
EXTREME_SHARE = 0.02


def ordinary_hours(y: np.ndarray) -> np.ndarray:
    """The rows candidates are scored on: all but those whose target or origin is an extreme hour
    (beyond ``EXTREME_SIGMAS`` robust deviations from the median, log scale; at most
    ``EXTREME_SHARE`` of the rows). No candidate forecasts a one-off 15x hour, and a forecast
    anchored on one is off whatever the model: left in, those few rows decided the choice (one
    spike in the history changed every horizon's choice)."""
    z = TargetTransform.fwd(y)
    if not np.isfinite(z).any():
        return np.ones(len(y), dtype=bool)
    med = np.nanmedian(z)
    dev = np.abs(z - med)
    sigma = max(1.4826 * float(np.nanmedian(dev)), 0.05)
    limit = max(EXTREME_SIGMAS * sigma, float(np.nanquantile(dev, 1 - EXTREME_SHARE)))
    return ~(dev > limit)


def _mae(y: np.ndarray, p: np.ndarray) -> float:
    err = np.abs(y - p)
    return float(np.nanmean(err)) if np.isfinite(err).any() else float("nan")


def _beats(c: Candidate, inc: Candidate, margin: float) -> bool:
    """Does ``c`` win across the folds: per fold, its error over ``inc``'s on the rows where both
    forecast; on average lower by ``margin``, and lower in most folds?

    On the same rows: the naive forecasts of last week's hour exist only from a week into the
    data, and their fold errors, over those rows only, were compared with a model's over all rows
    (bench/forecast: ``network_in_257a54`` 1.019 -> 1.005 of its best naive forecast, 28 -> 29
    series at or below theirs)."""
    ratios = []
    for rows in np.split(np.arange(len(c.row_err)), np.cumsum([len(p) for p in c.fold_pred])[:-1]):
        mine, theirs = c.row_err[rows], inc.row_err[rows]
        both = np.isfinite(mine) & np.isfinite(theirs)
        if both.sum() >= MIN_PAIRED_ROWS and theirs[both].sum() > 0:
            ratios.append(mine[both].sum() / theirs[both].sum())
    if not ratios:
        return False
    return float(np.mean(ratios)) < 1 - margin and sum(r < 1 for r in ratios) > len(ratios) / 2


# Where fewer than two weeks of rows judge the naive forecasts and the two best lie within 25 % of
# each other, the forecast to beat is their average — unless the average did worse than the better
# one on those rows (`_average_helps`): so short a block cannot tell them apart, and
# an average of two shape estimates is safer than the lucky one of them (bench/forecast: on the
# rows where all exist, 15 % took the geometric mean of artq over the best model 0.963 -> 0.957;
# judged on their own rows, 25 % gave 0.924 and 15 % 0.928, 1.08 kept fewer series at or below
# their best naive; the long series, with enough rows, keep their single pick).
NAIVE_TIE = 1.25
SHORT_EVIDENCE = 24 * 14


def _best_naive(X: np.ndarray, y: np.ndarray, cols: BaseColumns, naives: list[Candidate],
                average: Callable[[Candidate, Candidate], Candidate], since: int = 0) -> Candidate:
    """The naive forecast to beat. Naive forecasts need no fit rows, so each is judged on every
    recent row where it exists (the first of ``naives``, the last value, exists on all of them),
    by its error relative to the last value's on the same rows; on the folds when none has two
    days of such rows. On short evidence, two close ones are averaged (``NAIVE_TIE``) where the
    average beat both on their shared rows.

    Not only on the rows where all exist: on a short history, those are the last few days, where
    the same hour last week is known, and they left out the first weekend and the Monday after it,
    where the same hour yesterday failed (bench/forecast: ``ms_mongodb_machine`` 1.17 -> 0.88 of
    its best naive, the geometric mean of artq over the best model 0.936 -> 0.924)."""
    recent = slice(max(since, len(X) - SELECTION_ROWS), len(X))
    Xr, yr = X[recent], y[recent]
    preds = [TargetTransform.inv(c.members[0].transform.base_values(Xr, cols)) for c in naives]
    rows = np.isfinite(yr) & ordinary_hours(yr) & ordinary_hours(TargetTransform.inv(Xr[:, cols.level]))
    ratios, counts = np.full(len(naives), np.inf), np.zeros(len(naives), dtype=int)
    for k, p in enumerate(preds):
        own = rows & np.isfinite(p) & np.isfinite(preds[0])
        counts[k] = own.sum()
        reference = float(np.mean(np.abs(preds[0][own] - yr[own]))) if counts[k] else 0.0
        if counts[k] >= 48 and reference > 0:
            ratios[k] = float(np.mean(np.abs(p[own] - yr[own]))) / reference
    if not np.isfinite(ratios).any():
        return min(naives, key=lambda c: c.score)
    first, second = np.argsort(ratios)[:2]
    if (min(counts[first], counts[second]) < SHORT_EVIDENCE and np.isfinite(ratios[second])
            and ratios[second] <= ratios[first] * NAIVE_TIE and _average_helps(preds[first], preds[second], yr, rows)):
        return average(naives[first], naives[second])
    return naives[int(first)]


def _average_helps(a: np.ndarray, b: np.ndarray, y: np.ndarray, rows: np.ndarray) -> bool:
    """Was the average of forecasts ``a`` and ``b`` closer than both, on ``rows`` where both exist
    (none: the hedge stands)? The average hedges between two forecasts the evidence cannot tell apart; where it did worse
    than the better one, the evidence tells them apart (bench/forecast: on ``cpu_825cc2`` the
    daily shape was 5-19 % worse than the last value at every horizon and refit, and their average
    lost to the last value in the test days; the geometric mean of artq over the best model
    0.925 -> 0.921)."""
    both = rows & np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return True
    ea, eb, mean = (float(np.mean(np.abs(p[both] - y[both]))) for p in (a, b, (a + b) / 2))
    return mean < min(ea, eb)


def select(X: np.ndarray, y: np.ndarray, horizon: int, cols: BaseColumns, level: int, exog_cols: np.ndarray,
           trials: int, seed: int, progress: Callable[[str], None] | None = None, since: int = 0,
           naive_only: bool = False) -> Selection:
    """Choose the horizon's forecast among naive forecasts, anchored models and blends (module doc).
    ``since``: the first row of the current level regime (:mod:`artq.forecasting.regimes`); only
    rows from it on judge the candidates. ``naive_only``: the regime is too young for models."""
    if trials < 0:
        raise ValueError(f"`trials` must be >= 0. Got {trials}.")
    data = FoldData(X, y, horizon, cols, level, exog_cols, since)
    ref = data.naive("last")
    scale = np.where(ref.fold_mae > 0, ref.fold_mae, np.nan)

    def scored(c: Candidate | None) -> Candidate | None:
        if c is not None:
            r = c.fold_mae / scale
            c.score = float(np.nanmean(r)) if np.isfinite(r).any() else float("inf")
        return c

    naives = [scored(ref)] + [scored(data.naive(b)) for b in ("daily", "weekly", "sdelta", "wdelta", "smed")]
    everything = list(naives)
    best_naive = _best_naive(X, y, cols, naives, lambda a, b: scored(data.blend(a, b, rank=0)), since)
    choice = best_naive
    models: list[Candidate] = []
    seasonal = min((c for c in naives if c.members[0].transform.base in ("weekly", "smed", "wdelta")),
                   key=lambda c: c.score)
    bases = ["last", "sdelta"]
    if seasonal.score < min(naives[0].score, naives[3].score):  # a seasonal base beats the anchored ones
        bases.append(seasonal.members[0].transform.base)  # as a naive forecast: worth a model of its own
    if naive_only:
        bases = []
    for base in bases:
        c = scored(data.model(base, DEFAULT_PARAMS, seed))
        if progress:
            progress(f"h{horizon} model {base}")
        if c is None:
            continue
        models.append(c)
        everything.append(c)
        if _beats(c, choice, MARGIN):
            choice = c
    best_model = min(models, key=lambda c: c.score) if models else None
    if best_model is not None and data.has_inputs:
        c = scored(data.model(best_model.members[0].transform.base, DEFAULT_PARAMS, seed, inputs=True))
        if progress:
            progress(f"h{horizon} model with inputs")
        if c is not None:
            everything.append(c)
            if c.score < best_model.score:
                best_model = c
            if _beats(c, choice, MARGIN):
                choice = c
    if best_model is not None:
        rng = np.random.default_rng(seed * 1000 + horizon)
        m0 = best_model.members[0]
        for _ in range(trials):  # optional tuning: random parameter sets on the best model's base
            c = scored(data.model(m0.transform.base, sample_params(rng), seed, inputs=m0.inputs))
            if progress:
                progress(f"h{horizon} trial")
            if c is not None:
                everything.append(c)
                if _beats(c, best_model, 0.0):
                    if choice is best_model:
                        choice = c
                    best_model = c
        blend = scored(data.blend(best_model, best_naive))
        everything.append(blend)
        if _beats(blend, choice, 0.0 if choice.rank > 0 else MARGIN):
            choice = blend
    pred = np.concatenate(choice.fold_pred)
    rows = data.test_rows
    res = TargetTransform.fwd(y[rows]) - TargetTransform.fwd(pred)
    return Selection(choice.members, choice.label, rows, pred, res, data.fold_ends, everything, _mae(y[rows], pred))
