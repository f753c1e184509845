"""Target transforms, chosen per horizon by validation.

A transform is ``scale`` (``id`` or ``log``: log1p) plus ``base`` (what the model predicts the
*difference* against): ``level`` (nothing: the scaled value itself), ``last`` (the value at the
origin), ``seasonal`` (the mean of the same hour over the last 7 days) or ``weekly`` (the same
hour a week before: the model learns the deviation from seasonal-naive-168; rows without that
hour are left out of training, and a forecast without it falls back to the 7-day mean). The model learns
``s(y[t0+h]) - s(base)``; the forecast is ``s⁻¹(model + s(base))``. Bases read only data at or
before the origin (they are feature columns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SCALES = ("id", "log")
BASES = ("level", "last", "seasonal", "weekly")


@dataclass(frozen=True)
class TargetTransform:
    scale: str = "id"
    base: str = "level"

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"`scale` must be one of {', '.join(SCALES)}. Got {self.scale!r}.")
        if self.base not in BASES:
            raise ValueError(f"`base` must be one of {', '.join(BASES)}. Got {self.base!r}.")

    @property
    def name(self) -> str:
        return f"{self.scale}_{self.base}"

    @classmethod
    def from_name(cls, name: str) -> TargetTransform:
        scale, _, base = name.partition("_")
        return cls(scale, base)

    # --- maths ---
    def fwd(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        return np.log1p(np.maximum(v, 0.0)) if self.scale == "log" else v

    def inv(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        return np.expm1(z) if self.scale == "log" else z

    def base_values(self, X: pd.DataFrame, target: str) -> np.ndarray:
        """The base in original units, per row; NaN where it cannot be formed."""
        if self.base == "level":
            return np.zeros(len(X))
        last = X[f"{target}_lag_0"].to_numpy(dtype=float)
        # a missing origin value falls back to the trailing 24-hour mean (still only the past)
        last = np.where(np.isnan(last), X[f"{target}_roll_mean_24"].to_numpy(dtype=float), last)
        if self.base == "last":
            return last
        seasonal = X[f"{target}_same_hour_mean_7d"].to_numpy(dtype=float)
        seasonal = np.where(np.isnan(seasonal), last, seasonal)
        if self.base == "seasonal":
            return seasonal
        return X[f"{target}_same_hour_7d"].to_numpy(dtype=float)

    def base_for_forecast(self, X: pd.DataFrame, target: str) -> np.ndarray:
        """Like :meth:`base_values`, with the weekly base falling back to the 7-day mean."""
        b = self.base_values(X, target)
        if self.base == "weekly":
            b = np.where(np.isnan(b), TargetTransform(self.scale, "seasonal").base_values(X, target), b)
        return b

    def encode(self, y: np.ndarray, X: pd.DataFrame, target: str) -> np.ndarray:
        """Model target for true values ``y`` (NaN where base or y is missing)."""
        z = self.fwd(y)
        if self.base == "level":
            return z
        return z - self.fwd(self.base_values(X, target))

    def decode(self, m: np.ndarray, X: pd.DataFrame, target: str) -> np.ndarray:
        """Forecast in original units from the model's output ``m`` (transformed space)."""
        return self.inv(self.to_scaled(m, X, target))

    def to_scaled(self, m: np.ndarray, X: pd.DataFrame, target: str) -> np.ndarray:
        m = np.asarray(m, dtype=float)
        if self.base == "level":
            return m
        return m + self.fwd(self.base_for_forecast(X, target))


def candidates(y: np.ndarray, X: pd.DataFrame, target: str) -> list[TargetTransform]:
    """Transforms worth trying: log only for a never-negative target, the weekly base only when
    two days of rows have the same hour a week before."""
    scales = ["id", "log"] if np.nanmin(y) >= 0 else ["id"]
    bases = list(BASES)
    if X[f"{target}_same_hour_7d"].notna().sum() < 48:
        bases.remove("weekly")
    return [TargetTransform(s, b) for s in scales for b in bases]
