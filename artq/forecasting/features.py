"""Leak-proof, anchored features for the six horizon models, built with NumPy.

One row per forecast *origin* ``t0``. Every value in the row is computed from the origin's own
*window*: the target's rows ``t0 - 168 .. t0`` and each input's rows ``t0 - 24 .. t0`` — nothing
after ``t0`` (the leak test perturbs the future and checks every row up to the origin). The same
code builds one row for a live forecast and 8,760 rows for training, so the two cannot disagree.

Values live in the signed log1p scale ``s(v) = sign(v) log1p(|v|)`` and the target's features are
*anchored*: they are differences to the anchor ``a0`` (the last known target value), so a model
learns "how the next hours differ from now", which carries over when the baseline drifts. The
anchor itself is the column ``{target}_level``; the trees never split on it (training blanks it,
see :func:`artq.forecasting.tuning.fit_matrix`), it is there so the bases can be rebuilt from a row.
Windows use medians, not means, so one extreme hour moves them little.

Names: ``art_lag_3`` (s(y[t0-3]) - a0), ``art_med_24``, ``art_same_hour_7d``, ``cpm_s1_dev_24``.
An input series gets only *movements* (its value minus its 24-hour and 3-hour medians, and its
last-hour change), never its raw level: levels drift out of the range the trees were fitted on,
and a tree reads an unseen level as whatever regime sat at the edge of its training data.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from artq.errors import InputError, NotEnoughData

FEATURES_VERSION = 5
LOOKBACK_HOURS = 168
"""Oldest row any feature reads, counted back from the origin (same hour last week, 168-hour median)."""
TARGET_LOOKBACK_HOURS = LOOKBACK_HOURS
"""Hours before the origin that the target's features read (the batch cycle loads this many)."""
EXOG_LOOKBACK_HOURS = 24
"""Hours before the origin that any other series' features read (24-hour median, 1-hour delta)."""

TARGET_LAGS = (1, 2, 3, 6, 12, 23, 24, 168)
TARGET_MEDIANS = (3, 24, 168)
DAYS = 7  # same-hour medians over the last week
HOUR_NS = 3_600_000_000_000
# Metric keys in the wide frame, longest first so `very_slow_x` is not read as `slow_...`.
_METRIC_PREFIXES = ("very_slow", "exceptions", "slow", "epm", "cpm", "art")
KIND_LABELS = {
    "art": "response time",
    "cpm": "load",
    "epm": "errors",
    "exceptions": "errors",
    "err_rate": "errors",
    "slow": "slow calls",
    "very_slow": "slow calls",
}


def slog(v) -> np.ndarray:
    """Signed log1p: log1p for non-negative values, odd-symmetric below zero (monotone, so a median
    in this scale is a median in the original units)."""
    v = np.asarray(v, dtype=float)
    return np.sign(v) * np.log1p(np.abs(v))


UNIT_MEDIAN = 1000.0


def model_unit(y) -> float:
    """The factor that puts a target's typical (median non-zero) hour at ``UNIT_MEDIAN``.

    ``slog`` is a log only well above 1: a CPU share of 0.08 or a latency of 0.2 s sat in its linear
    part, where every band, spread and range meant for ratios became an absolute amount, and the
    same series in other units got other forecasts. In model units the forecasts do not depend on
    the units (bench/forecast: geometric mean of artq over the best model 0.957 -> 0.949).
    """
    v = np.abs(np.asarray(y, dtype=float))
    v = v[np.isfinite(v) & (v > 0)]
    return float(UNIT_MEDIAN / np.median(v)) if len(v) else 1.0


def slog_inv(z) -> np.ndarray:
    z = np.asarray(z, dtype=float)
    return np.sign(z) * np.expm1(np.abs(z))


def split_column(column: str) -> tuple[str, str]:
    """``cpm_abpserver3`` -> (``cpm``, ``abpserver3``); ``cpm`` -> (``cpm``, ``""``) (main server).

    A column that is not named by :func:`artq.catalog.series_name` (any CSV column) is
    ``("exog", column)``.
    """
    for key in _METRIC_PREFIXES:
        if column == key:
            return key, ""
        if column.startswith(key + "_") and len(column) > len(key) + 1:
            return key, column[len(key) + 1 :]
    return "exog", column


def check_frame(frame: pd.DataFrame, target: str, columns: Sequence[str] = ()) -> None:
    """Validate the wide hourly frame contract up front (raises :class:`InputError`)."""
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"`frame` must be a pandas DataFrame. Got {type(frame).__name__}.")
    idx = frame.index
    if not isinstance(idx, pd.DatetimeIndex) or idx.tz is None:
        raise InputError("`frame` must have a tz-aware UTC DatetimeIndex (one row per hour).")
    if len(idx) > 1:
        wrong = np.diff(idx.as_unit("ns").asi8) != HOUR_NS
        if wrong.any():
            bad = idx[1:][wrong][0]
            raise InputError(
                f"`frame` must be a complete hourly grid (missing hours as NaN rows). "
                f"The step before {bad.isoformat()} is not one hour."
            )
    for col in (target, *columns):
        if col not in frame.columns:
            raise InputError(f"`frame` has no column {col!r}; it has {', '.join(map(str, frame.columns))}.")


def _windows(z: np.ndarray, positions: np.ndarray, back: int) -> np.ndarray:
    """``(len(positions), back + 1)``: row i holds ``z[p - back .. p]`` (NaN before the start)."""
    padded = np.concatenate([np.full(back, np.nan), z])
    return padded[positions[:, None] + np.arange(back + 1)]


def _nanmedian(a: np.ndarray) -> np.ndarray:
    """Row medians ignoring NaN (NaN for an all-missing row), as ``np.nanmedian(a, axis=1)`` but
    without its masked-array path (20x slower on the short windows of a live forecast)."""
    s = np.sort(a, axis=1)  # NaN sorts last
    k = np.isfinite(a).sum(axis=1)
    lo = np.take_along_axis(s, np.maximum((k - 1) // 2, 0)[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(s, np.minimum(k // 2, a.shape[1] - 1)[:, None], axis=1)[:, 0]
    return np.where(k > 0, (lo + hi) / 2, np.nan)


def _nanreduce(fn, a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(a, axis=1)


@dataclass
class FeatureBuilder:
    """Turns the wide frame into one feature table per horizon (rows = origins)."""

    target: str
    exog: list[str] = field(default_factory=list)
    unit: float = 1.0  # the target is read times this (:func:`model_unit`)

    def __post_init__(self) -> None:
        if self.target in self.exog:
            raise InputError(f"`exog` must not contain the target column {self.target!r}.")
        if not (np.isfinite(self.unit) and self.unit > 0):
            raise InputError(f"`unit` must be a finite number > 0. Got {self.unit!r}.")
        self.exog = list(self.exog)

    # ---- names -----------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return self.base_names + self.horizon_names

    @property
    def base_names(self) -> list[str]:
        n = self.target
        names = [f"{n}_level"] + [f"{n}_lag_{k}" for k in TARGET_LAGS] + [f"{n}_med_{w}" for w in TARGET_MEDIANS]
        names += [f"{n}_mad_24", f"{n}_max_24", f"{n}_min_24", f"{n}_origin_med_7d", f"{n}_missing_0",
                  f"{n}_missing_24"]
        for c in self.exog:  # movements only: an input's raw level drifts out of the training range
            names += [f"{c}_dev_24", f"{c}_delta_1", f"{c}_dev_3"]
        if self.exog:
            names.append("exog_missing_0")
        return names

    @property
    def horizon_names(self) -> list[str]:
        n = self.target
        return [f"{n}_same_hour_1d", f"{n}_same_hour_2d", f"{n}_same_hour_7d", f"{n}_same_hour_med_7d",
                f"{n}_seasonal_step", "target_hour", "target_weekday"]

    # ---- arrays ----------------------------------------------------------------------------
    def arrays(self, frame: pd.DataFrame, positions: np.ndarray, horizons: Sequence[int],
               check: bool = True) -> dict[int, np.ndarray]:
        """Feature rows ``{h: float array (len(positions), n_features)}`` for the origins at the
        given row positions of ``frame``; each row reads only rows ``<=`` its origin."""
        if check:
            check_frame(frame, self.target, self.exog)
        positions = np.asarray(positions, dtype=np.int64)
        n = len(positions)
        W = _windows(slog(frame[self.target].to_numpy(dtype=float) * self.unit), positions, LOOKBACK_HOURS)
        last = LOOKBACK_HOURS
        known = np.isfinite(W)
        at = np.where(known, np.arange(last + 1), -1).max(axis=1)
        a0 = np.where(at >= 0, W[np.arange(n), np.maximum(at, 0)], np.nan)  # last known value
        cols = [a0]
        cols += [W[:, last - k] - a0 for k in TARGET_LAGS]
        med24 = None
        for w in TARGET_MEDIANS:
            m = _nanmedian(W[:, last + 1 - w :])
            med24 = m if w == 24 else med24
            cols.append(m - a0)
        day = W[:, last - 23 :]
        cols.append(_nanmedian(np.abs(day - med24[:, None])))
        cols.append(_nanreduce(np.nanmax, day) - a0)
        cols.append(_nanreduce(np.nanmin, day) - a0)
        cols.append(_nanmedian(W[:, [last - 24 * k for k in range(1, DAYS + 1)]]) - a0)  # the origin's hour, last 7 days
        cols.append((~known[:, last]).astype(float))
        cols.append((~known[:, last - 23 :]).sum(axis=1).astype(float))
        if self.exog:
            missing = np.zeros(n)
            for c in self.exog:
                V = _windows(slog(frame[c].to_numpy(dtype=float)), positions, EXOG_LOOKBACK_HOURS)
                x0 = V[:, -1]
                cols += [x0 - _nanmedian(V[:, 1:]), x0 - V[:, -2], x0 - _nanmedian(V[:, -3:])]
                missing += np.isnan(x0)
            cols.append(missing)
        base = np.column_stack(cols) if n else np.empty((0, len(cols)))
        stamps = frame.index.as_unit("ns").asi8[positions] if n else np.empty(0, dtype=np.int64)
        hours0 = stamps // HOUR_NS  # hours since the epoch (a Thursday at 00:00)
        out = {}
        for h in horizons:
            same = [last + h - 24 * k for k in range(1, DAYS + 1)]
            steps = W[:, same] - W[:, [s - h for s in same]]
            hour = hours0 + h
            hcols = [W[:, last + h - 24] - a0, W[:, last + h - 48] - a0, W[:, h] - a0,
                     _nanmedian(W[:, same]) - a0, _nanmedian(steps),
                     (hour % 24).astype(float), ((hour // 24 + 3) % 7).astype(float)]
            out[h] = np.hstack([base, np.column_stack(hcols)]) if n else np.empty((0, len(self.feature_names)))
        return out

    # ---- tables ----------------------------------------------------------------------------
    def transform(self, frame: pd.DataFrame, horizons: Sequence[int]) -> dict[int, pd.DataFrame]:
        """Feature tables ``{h: X_h}`` for every row of ``frame`` taken as an origin."""
        check_frame(frame, self.target, self.exog)
        arrays = self.arrays(frame, np.arange(len(frame)), horizons, check=False)
        return {h: pd.DataFrame(a, index=frame.index, columns=self.feature_names) for h, a in arrays.items()}

    def transform_at(self, frame: pd.DataFrame, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, pd.DataFrame]:
        """Feature rows for the given origins only (each computed from rows <= its origin)."""
        check_frame(frame, self.target, self.exog)
        origins = pd.DatetimeIndex(origins)
        positions = frame.index.get_indexer(origins)
        if (positions < 0).any():
            raise InputError(f"`origin` {origins[positions < 0][0].isoformat()} is not a row of `frame`.")
        arrays = self.arrays(frame, positions, horizons, check=False)
        return {h: pd.DataFrame(a, index=origins, columns=self.feature_names) for h, a in arrays.items()}


def history_hours_needed() -> int:
    """Rows before (and including) the origin that the features read."""
    return LOOKBACK_HOURS + 1


def ensure_rows(n_rows: int, needed: int, what: str) -> None:
    if n_rows < needed:
        raise NotEnoughData(
            f"{what} needs at least {needed} hours with a known target; got {n_rows}. "
            "Backfill more history or lower `forecast.min_training_hours`."
        )
