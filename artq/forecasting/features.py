"""Leak-proof features for the six horizon models.

One row per forecast *origin* ``t0``; every value in that row is computed from rows at or before
``t0`` (``shift`` with non-negative lags and trailing ``rolling`` windows, never centred). The
only horizon-specific columns are the target's *same hour yesterday / last week* (hour
``t0 + h - 24`` / ``t0 + h - 168``, both before ``t0`` for h <= 6) and the calendar of the target
hour, which is known in advance.

Names are predictable: ``art_lag_0`` (the value at the origin), ``art_roll_mean_24``,
``cpm_abpserver3_lag_1``, ``err_rate_abpserver3_lag_0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from artq.errors import InputError, NotEnoughData

FEATURES_VERSION = 1
LOOKBACK_HOURS = 168
"""Oldest row any feature reads, counted back from the origin (last week, 168-hour windows)."""
TARGET_LOOKBACK_HOURS = LOOKBACK_HOURS
"""Hours before the origin that the target's features read (the batch cycle loads this many)."""
EXOG_LOOKBACK_HOURS = 24
"""Hours before the origin that any other series' features read (lags 0-1, 3/6/24-hour windows, 24-hour deltas)."""

TARGET_LAGS = (0, 1, 2, 3, 4, 5, 11, 23)
TARGET_WINDOWS = (3, 6, 24, 168)
# Metric keys in the wide frame, longest first so `very_slow_x` is not read as `slow_...`.
_METRIC_PREFIXES = ("very_slow", "exceptions", "slow", "epm", "cpm", "art")
_RICH_METRICS = {"art", "cpm", "exog"}  # full set of lags/windows; the rest get a short set
KIND_LABELS = {
    "art": "response time",
    "cpm": "load",
    "epm": "errors",
    "exceptions": "errors",
    "err_rate": "errors",
    "slow": "slow calls",
    "very_slow": "slow calls",
}


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
        wrong = np.asarray((idx[1:] - idx[:-1]) != pd.Timedelta(hours=1))
        if wrong.any():
            bad = idx[1:][wrong][0]
            raise InputError(
                f"`frame` must be a complete hourly grid (missing hours as NaN rows). "
                f"The step before {bad.isoformat()} is not one hour."
            )
    for col in (target, *columns):
        if col not in frame.columns:
            raise InputError(f"`frame` has no column {col!r}; it has {', '.join(map(str, frame.columns))}.")


@dataclass
class FeatureBuilder:
    """Turns the wide frame into one feature table per horizon (rows = origins)."""

    target: str
    exog: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.target in self.exog:
            raise InputError(f"`exog` must not contain the target column {self.target!r}.")
        self.exog = list(self.exog)

    # ---- names -----------------------------------------------------------------------------
    def _error_rate_pairs(self) -> list[tuple[str, str, str]]:
        """(name, epm column, cpm column) for every server that has both counters."""
        cols = set(self.exog) | {self.target}
        pairs = []
        for col in self.exog:
            kind, server = split_column(col)
            if kind == "epm":
                cpm = f"cpm_{server}" if server else "cpm"
                if cpm in cols:
                    pairs.append((f"err_rate_{server}" if server else "err_rate", col, cpm))
        return pairs

    @property
    def feature_names(self) -> list[str]:
        return list(self._base_names()) + list(self._horizon_names())

    def _horizon_names(self) -> list[str]:
        y = self.target
        return [
            f"{y}_same_hour_1d", f"{y}_same_hour_2d", f"{y}_same_hour_7d", f"{y}_same_hour_mean_7d",
            f"{y}_same_hour_step_1d", f"{y}_same_hour_step_7d", "target_hour", "target_weekday",
        ]

    def _base_names(self) -> list[str]:
        return list(self._base_table(_empty_frame([self.target, *self.exog])).columns)

    # ---- tables ----------------------------------------------------------------------------
    def _base_table(self, frame: pd.DataFrame) -> pd.DataFrame:
        y = frame[self.target].astype(float)
        cols: dict[str, pd.Series] = {}
        n = self.target
        for k in TARGET_LAGS:
            cols[f"{n}_lag_{k}"] = y.shift(k)
        for w in TARGET_WINDOWS:
            roll = y.rolling(w, min_periods=max(1, w // 4))
            cols[f"{n}_roll_mean_{w}"] = roll.mean()
        for w in (24, 168):
            roll = y.rolling(w, min_periods=max(2, w // 4))
            cols[f"{n}_roll_std_{w}"] = roll.std()
        cols[f"{n}_roll_max_24"] = y.rolling(24, min_periods=6).max()
        cols[f"{n}_roll_min_24"] = y.rolling(24, min_periods=6).min()
        cols[f"{n}_delta_1"] = y - y.shift(1)
        cols[f"{n}_delta_24"] = y - y.shift(24)
        same_hour = pd.concat([y.shift(24 * k) for k in range(1, 8)], axis=1).mean(axis=1)
        cols[f"{n}_anomaly_7d"] = y - same_hour
        cols[f"{n}_missing_0"] = y.isna().astype(float)
        cols[f"{n}_missing_24"] = y.isna().astype(float).rolling(24, min_periods=1).sum()
        cols["origin_hour"] = pd.Series(frame.index.hour, index=frame.index, dtype=float)
        for col in self.exog:
            x = frame[col].astype(float)
            kind, _ = split_column(col)
            cols[f"{col}_lag_0"] = x
            if kind in _RICH_METRICS:
                cols[f"{col}_lag_1"] = x.shift(1)
                cols[f"{col}_roll_mean_3"] = x.rolling(3, min_periods=1).mean()
                cols[f"{col}_roll_mean_24"] = x.rolling(24, min_periods=6).mean()
                cols[f"{col}_delta_24"] = x - x.shift(24)
            else:
                cols[f"{col}_roll_mean_6"] = x.rolling(6, min_periods=2).mean()
        for name, epm, cpm in self._error_rate_pairs():
            rate = frame[epm].astype(float) / frame[cpm].astype(float).where(frame[cpm] > 0)
            cols[f"{name}_lag_0"] = rate
            cols[f"{name}_roll_mean_24"] = rate.rolling(24, min_periods=6).mean()
        if self.exog:
            cols["exog_missing_0"] = frame[self.exog].isna().sum(axis=1).astype(float)
        return pd.DataFrame(cols, index=frame.index)

    def _horizon_table(self, frame: pd.DataFrame, horizon: int) -> pd.DataFrame:
        y = frame[self.target].astype(float)
        n, h = self.target, horizon
        d1, d2, d7 = y.shift(24 - h), y.shift(48 - h), y.shift(168 - h)
        mean7 = pd.concat([y.shift(24 * k - h) for k in range(1, 8)], axis=1).mean(axis=1)
        when = frame.index + pd.Timedelta(hours=h)
        return pd.DataFrame(
            {
                f"{n}_same_hour_1d": d1,
                f"{n}_same_hour_2d": d2,
                f"{n}_same_hour_7d": d7,
                f"{n}_same_hour_mean_7d": mean7,
                f"{n}_same_hour_step_1d": d1 - y.shift(24),
                f"{n}_same_hour_step_7d": d7 - y.shift(168),
                "target_hour": np.asarray(when.hour, dtype=float),
                "target_weekday": np.asarray(when.day_of_week, dtype=float),
            },
            index=frame.index,
        )

    def transform(self, frame: pd.DataFrame, horizons: Sequence[int]) -> dict[int, pd.DataFrame]:
        """Feature tables ``{h: X_h}`` for every row of ``frame`` taken as an origin."""
        check_frame(frame, self.target, self.exog)
        base = self._base_table(frame)
        return {h: pd.concat([base, self._horizon_table(frame, h)], axis=1) for h in horizons}

    def transform_at(self, frame: pd.DataFrame, origins: pd.DatetimeIndex, horizons: Sequence[int]) -> dict[int, pd.DataFrame]:
        """Feature rows for the given origins only (each computed from rows <= its origin)."""
        check_frame(frame, self.target, self.exog)
        missing = origins.difference(frame.index)
        if len(missing):
            raise InputError(f"`origin` {missing[0].isoformat()} is not a row of `frame`.")
        first = frame.index.get_loc(origins.min())
        start = max(0, first - LOOKBACK_HOURS - 1)
        last = frame.index.get_loc(origins.max())
        window = frame.iloc[start : last + 1]
        tables = self.transform(window, horizons)
        return {h: t.loc[origins] for h, t in tables.items()}


def _empty_frame(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC"), dtype=float)


def history_hours_needed() -> int:
    """Rows before (and including) the origin that the features read."""
    return LOOKBACK_HOURS + 1


def ensure_rows(n_rows: int, needed: int, what: str) -> None:
    if n_rows < needed:
        raise NotEnoughData(
            f"{what} needs at least {needed} hours with a known target; got {n_rows}. "
            "Backfill more history or lower `forecast.min_training_hours`."
        )
