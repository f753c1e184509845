"""Naive baselines: the last value, and the value of the same hour one season before the target hour."""

from __future__ import annotations

import numpy as np
import pandas as pd

SEASONS = {"seasonal_naive_24": 24, "seasonal_naive_168": 168}


def seasonal_naive(y: pd.Series, origins: pd.DatetimeIndex, horizon: int, season: int) -> np.ndarray:
    """Forecast of ``y`` at ``origin + horizon`` as ``y[origin + horizon - season]`` (needs season >= horizon)."""
    if season < horizon:
        raise ValueError(f"`season` must be >= `horizon` so the forecast reads only the past. Got {season} < {horizon}.")
    return y.shift(season - horizon).reindex(origins).to_numpy(dtype=float)


def in_sample_scale(y: pd.Series, season: int = 24) -> float:
    """MAE of the seasonal-naive forecast inside ``y``: the MASE denominator."""
    return float(np.nanmean(np.abs(y - y.shift(season))))


def last_value(y: pd.Series, origins: pd.DatetimeIndex, horizon: int) -> np.ndarray:
    """Persistence: the forecast of every horizon is the value at the origin."""
    return y.reindex(origins).to_numpy(dtype=float)
