"""Anchored target transforms: what a horizon model predicts the difference against.

A transform is a ``base`` in the signed log1p scale ``s`` (:func:`artq.forecasting.features.slog`);
the model learns ``s(y[t0+h]) - base`` and the forecast is ``s⁻¹(model + base)``. Every base is
read from the origin's feature row (so from rows at or before the origin):

- ``last``: the anchor ``a0``, the last known value (persistence);
- ``sdelta``: ``a0`` plus the median over the last 7 days of the change from the origin's hour
  to the target hour — the daily shape, re-levelled to now, so a drifting baseline costs nothing;
- ``wdelta``: ``a0`` plus last week's change from the origin's hour to the target hour — the
  weekday's own shape, re-levelled to now (needs a week of history; falls back to ``sdelta``);
- ``smed``: the median of the same hour over the last 7 days (robust seasonal profile, not
  anchored: for series that return to a stable daily shape);
- ``weekly``: the same hour a week before (seasonal naive 168) — not anchored to now; it needs a week of history (rows without it are left out of training, a
  forecast without it falls back to ``sdelta``);
- ``daily``: the same hour a day before (seasonal naive 24).

The bases that copy one past day or week (``daily``, ``weekly``, ``wdelta``) are kept within
``max(3 x the 24-hour MAD, 0.15)`` (log scale) of their 7-day-median counterparts, so an outage
last week is not copied into this week's forecast.

With no trees (``n_rounds == 0``) a transform *is* the naive forecast of its base, which is how
the naive forecasts compete in model selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artq.forecasting.features import slog, slog_inv

SCALES = ("log",)
BASES = ("last", "sdelta", "wdelta", "smed", "weekly", "daily")

BAND_MADS = 3.0
MIN_BAND = 0.15  # log scale: +-16 %
SHIFT_BANDS = 2.0  # a level shift: the last 3 hours' median misses the copied hour by 2 bands


def _within(v: np.ndarray, centre: np.ndarray, band: np.ndarray) -> np.ndarray:
    """``v`` clipped to ``centre +- band`` (unchanged where the centre is unknown)."""
    return np.where(np.isnan(centre), v, np.clip(v, centre - band, centre + band))


@dataclass(frozen=True)
class BaseColumns:
    """Positions, in a feature row, of the columns the bases are built from."""

    level: int
    step: int
    day: int
    week: int
    smed: int
    week_origin: int
    mad: int
    day_origin: int
    smed_origin: int
    recent: int

    @classmethod
    def of(cls, feature_names: list[str], target: str) -> BaseColumns:
        pos = {n: i for i, n in enumerate(feature_names)}
        return cls(pos[f"{target}_level"], pos[f"{target}_seasonal_step"], pos[f"{target}_same_hour_1d"],
                   pos[f"{target}_same_hour_7d"], pos[f"{target}_same_hour_med_7d"], pos[f"{target}_lag_168"],
                   pos[f"{target}_mad_24"], pos[f"{target}_lag_24"], pos[f"{target}_origin_med_7d"],
                   pos[f"{target}_med_3"])


@dataclass(frozen=True)
class TargetTransform:
    scale: str = "log"
    base: str = "last"

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
    @staticmethod
    def fwd(v) -> np.ndarray:
        return slog(v)

    @staticmethod
    def inv(z) -> np.ndarray:
        return slog_inv(z)

    def base_values(self, X: np.ndarray, cols: BaseColumns) -> np.ndarray:
        """The base (scaled) per row, NaN where it cannot be formed: training rows."""
        a0 = X[:, cols.level]
        if self.base == "last":
            return a0
        if self.base == "sdelta":
            step = X[:, cols.step]
            return a0 + np.where(np.isnan(step), 0.0, step)
        if self.base == "smed":
            return a0 + X[:, cols.smed]
        # a single past day or week is copied, so an outage in it would be copied too: keep the
        # copy within a band around its 7-day median counterpart
        band = np.fmax(BAND_MADS * X[:, cols.mad], MIN_BAND)
        if self.base == "wdelta":
            return a0 + _within(X[:, cols.week] - X[:, cols.week_origin], X[:, cols.step], band)
        return a0 + _within(X[:, cols.week if self.base == "weekly" else cols.day], X[:, cols.smed], band)

    def base_for_forecast(self, X: np.ndarray, cols: BaseColumns) -> np.ndarray:
        """Like :meth:`base_values`, falling back to ``sdelta`` where a seasonal base is missing,
        and where a copied day (``daily``, ``smed``) misses the last three hours' level by more than
        two bands: the level has shifted since the days it copies, and a copy would forecast the
        old level."""
        b = self.base_values(X, cols)
        if self.base in ("weekly", "daily", "smed", "wdelta"):
            anchored = TargetTransform(self.scale, "sdelta").base_values(X, cols)
            b = np.where(np.isnan(b), anchored, b)
            if self.base in ("daily", "smed"):  # (a week back, only the origin's hour is in the window)
                then = X[:, cols.day_origin if self.base == "daily" else cols.smed_origin]
                band = SHIFT_BANDS * np.fmax(BAND_MADS * X[:, cols.mad], MIN_BAND)
                with np.errstate(invalid="ignore"):
                    shifted = np.abs(X[:, cols.recent] - then) > band
                b = np.where(shifted, anchored, b)
        return b

    def encode(self, y: np.ndarray, X: np.ndarray, cols: BaseColumns) -> np.ndarray:
        """Model target for true values ``y`` (NaN where base or y is missing)."""
        return self.fwd(y) - self.base_values(X, cols)

    def to_scaled(self, m: np.ndarray, X: np.ndarray, cols: BaseColumns) -> np.ndarray:
        return np.asarray(m, dtype=float) + self.base_for_forecast(X, cols)

    def decode(self, m: np.ndarray, X: np.ndarray, cols: BaseColumns) -> np.ndarray:
        """Forecast in original units from the model's output ``m``."""
        return self.inv(self.to_scaled(m, X, cols))
