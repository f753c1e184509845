"""Six XGBoost regressors (direct strategy, one per horizon) with intervals: :class:`ModelBundle`.

``train_bundle`` builds the leak-proof features, chooses per horizon a target transform (and,
with ``tune=True``, hyper-parameters) on time-ordered validation rows, calibrates a conformal
interval from those out-of-sample residuals, and refits each model on the whole window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import xgboost as xgb

from artq.config import ForecastSettings
from artq.errors import InputError, ModelError, NotEnoughData
from artq.forecasting.explain import feature_group, group_contributions
from artq.forecasting.features import (
    FeatureBuilder,
    check_frame,
    ensure_rows,
    history_hours_needed,
)
from artq.forecasting.intervals import ConformalInterval
from artq.forecasting.transforms import TargetTransform, candidates
from artq.forecasting.tuning import Member, fit_final, select
from artq.timeutil import as_utc

Progress = Callable[[str, int, int], None]
DEFAULT_TUNE_TRIALS = 12
RECENT_HOURS = 48  # forecasts this far back recalibrate the intervals (sliding conformal window)


@dataclass
class HorizonForecast:
    horizon: int
    origin: datetime
    target_hour: datetime
    value: float
    lower: float
    upper: float
    coverage: float
    drivers: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "horizon": self.horizon, "origin": self.origin.isoformat(),
            "target_hour": self.target_hour.isoformat(), "value": self.value, "lower": self.lower,
            "upper": self.upper, "coverage": self.coverage, "drivers": [list(d) for d in self.drivers],
        }


@dataclass
class ModelBundle:
    """The six horizon models and everything needed to use and judge them."""

    target: str
    exog: list[str]
    horizons: int = 6
    coverage: float = 0.8
    tier_names: dict[str, str] = field(default_factory=dict)  # column slug -> tier display name
    feature_names_: list[str] = field(default_factory=list)
    members_: dict[int, list[Member]] = field(default_factory=dict)  # per horizon: 1 model or a blend of 2
    boosters_: dict[int, list[xgb.Booster]] = field(default_factory=dict)  # aligned with members_
    intervals_: dict[int, ConformalInterval] = field(default_factory=dict)
    metrics_: dict = field(default_factory=dict)
    training_window_: dict = field(default_factory=dict)
    input_ranges_: dict = field(default_factory=dict)
    spike_threshold_: float = float("nan")
    tuned_: bool = False
    seed: int = 0
    version: str | None = None

    @property
    def transforms_(self) -> dict[int, TargetTransform]:
        """The primary (best single) model's target transform per horizon."""
        return {h: m[0].transform for h, m in self.members_.items()}

    @property
    def params_(self) -> dict[int, dict]:
        return {h: m[0].params for h, m in self.members_.items()}

    @property
    def n_rounds_(self) -> dict[int, int]:
        return {h: m[0].n_rounds for h, m in self.members_.items()}

    @property
    def builder(self) -> FeatureBuilder:
        return FeatureBuilder(self.target, self.exog)

    @property
    def history_hours_needed(self) -> int:
        """Rows up to and including the origin that :meth:`predict` reads: the features' lookback,
        plus the last ``RECENT_HOURS`` of forecasts whose errors recalibrate the intervals."""
        return history_hours_needed() + RECENT_HOURS + self.horizons

    # ---- prediction --------------------------------------------------------------------------
    def _check_horizon(self, horizon: int) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or not 1 <= horizon <= self.horizons:
            raise InputError(f"`horizon` must be in 1..{self.horizons}. Got {horizon!r}.")

    def _with_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame with every trained column; an input series with no rows at all in the frame
        (the wide frame has no column for a series never observed in its window) is all-missing,
        which the missing-data features show. Without the target there is nothing to forecast."""
        if self.target not in frame.columns:
            raise ModelError(
                f"the frame has no {self.target!r} column, which model version {self.version or '(unsaved)'} "
                "forecasts. Fetch its history first."
            )
        missing = [c for c in self.exog if c not in frame.columns]
        if not missing:
            return frame
        return frame.assign(**{c: np.nan for c in missing})

    def point(self, X: pd.DataFrame, horizon: int) -> np.ndarray:
        """Point forecasts (original units) for feature rows ``X``: the mean of the horizon's members."""
        dm = xgb.DMatrix(X[self.feature_names_], feature_names=self.feature_names_)
        values = [m.transform.decode(b.predict(dm), X, self.target)
                  for m, b in zip(self.members_[horizon], self.boosters_[horizon], strict=True)]
        return np.mean(values, axis=0)

    def _drivers(self, X: pd.DataFrame, horizon: int, value: float, groups: list[str]) -> list[tuple[str, float]]:
        """Feature contributions in the target's units (log models: scaled by d value / d log)."""
        dm = xgb.DMatrix(X[self.feature_names_], feature_names=self.feature_names_)
        total = np.zeros(len(self.feature_names_) + 1)
        members = list(zip(self.members_[horizon], self.boosters_[horizon], strict=True))
        for m, b in members:
            unit = 1.0 + max(value, 0.0) if m.transform.scale == "log" else 1.0
            total += b.predict(dm, pred_contribs=True)[0] * unit / len(members)
        return group_contributions(total, groups, 1.0)

    def predict_frame(self, frame: pd.DataFrame, origins: Sequence | pd.DatetimeIndex) -> dict[int, pd.DataFrame]:
        """Vectorised forecasts for many origins: ``{h: DataFrame(value, lower, upper)}``.

        Each origin's forecast and interval read only rows at or before it: the interval's
        recent residuals are those of hours after the training window and at or before the origin.
        """
        frame = self._with_columns(frame)
        origins = pd.DatetimeIndex(origins)
        H = self.horizons
        end = pd.Timestamp(self.training_window_["end"]) if self.training_window_ else origins.min()
        first = max(origins.min() - pd.Timedelta(hours=RECENT_HOURS + H), end - pd.Timedelta(hours=H))
        extra = frame.index[(frame.index >= first) & (frame.index < origins.max())]
        all_o = origins.union(extra)
        X = self.builder.transform_at(frame, all_o, range(1, H + 1))
        y = frame[self.target].astype(float)
        pos = all_o.get_indexer(origins)
        out = {}
        for h in range(1, H + 1):
            value = self.point(X[h], h)
            scale = self.members_[h][0].transform  # intervals live in the primary model's scale
            when = all_o + pd.Timedelta(hours=h)
            residual = scale.fwd(y.reindex(when).to_numpy()) - scale.fwd(value)
            lo, hi = np.empty(len(origins)), np.empty(len(origins))
            for i, (p, t) in enumerate(zip(pos, origins, strict=True)):
                a = when.searchsorted(max(end, t - pd.Timedelta(hours=RECENT_HOURS)), side="right")
                b = when.searchsorted(t, side="right")
                recent = residual[a:b]
                lo[i], hi[i] = self.intervals_[h].bounds_with(float(scale.fwd(value[p])), recent[np.isfinite(recent)])
            out[h] = pd.DataFrame({"value": value[pos], "lower": scale.inv(lo), "upper": scale.inv(hi)}, index=origins)
        return out

    def predict(self, frame: pd.DataFrame, origin: datetime, horizon: int) -> HorizonForecast:
        """Forecast hour ``origin + horizon`` from rows at or before ``origin`` only."""
        self._check_horizon(horizon)
        return self._predict(frame, origin, [horizon])[0]

    def predict_all(self, frame: pd.DataFrame, origin: datetime) -> list[HorizonForecast]:
        return self._predict(frame, origin, list(range(1, self.horizons + 1)))

    def _predict(self, frame: pd.DataFrame, origin: datetime, horizons: list[int]) -> list[HorizonForecast]:
        if not isinstance(origin, datetime):
            raise InputError(f"`origin` must be a datetime on a whole UTC hour. Got {origin!r}.")
        origin = pd.Timestamp(as_utc(origin))
        frame = self._with_columns(frame)
        check_frame(frame, self.target)
        past = frame.loc[:origin, [self.target, *self.exog]]
        if len(past) == 0 or past.index[-1] != origin:
            raise InputError(f"`origin` {origin.isoformat()} is not a row of `frame`.")
        if past[self.target].iloc[-self.history_hours_needed :].notna().sum() == 0:
            raise NotEnoughData(f"no known `{self.target}` value in the {self.history_hours_needed} hours up to {origin.isoformat()}.")
        X = self.builder.transform_at(past, pd.DatetimeIndex([origin]), horizons)
        rows = self.predict_frame(past, [origin])
        out = []
        groups = [feature_group(f, self.target, self.exog, self.tier_names) for f in self.feature_names_]
        for h in horizons:
            row = rows[h].iloc[0]
            out.append(HorizonForecast(
                horizon=h, origin=origin.to_pydatetime(), target_hour=(origin + pd.Timedelta(hours=h)).to_pydatetime(),
                value=float(row["value"]), lower=float(row["lower"]), upper=float(row["upper"]),
                coverage=self.coverage, drivers=self._drivers(X[h], h, float(row["value"]), groups),
            ))
        return out


def _resolve_exog(frame: pd.DataFrame, target: str, exog: str | Sequence[str]) -> list[str]:
    if isinstance(exog, str):
        if exog == "auto":
            return [c for c in frame.columns if c != target and pd.api.types.is_numeric_dtype(frame[c])]
        if exog == "none":
            return []
        raise InputError(f"`exog` must be 'auto', 'none' or a list of columns. Got {exog!r}.")
    return list(exog)


def train_bundle(frame: pd.DataFrame, target: str = "art", settings: ForecastSettings | None = None,
                 tune: bool = False, progress: Progress | None = None, *, exog: str | Sequence[str] = "auto",
                 tier_names: Mapping[str, str] | None = None) -> ModelBundle:
    """Fit the six horizon models on the last ``settings.training_days`` of ``frame``."""
    s = settings or ForecastSettings()
    if not isinstance(tune, bool):
        raise InputError(f"`tune` must be True or False. Got {tune!r}.")
    check_frame(frame, target)
    cols = _resolve_exog(frame, target, exog)
    check_frame(frame, target, cols)
    window_start = frame.index[-1] - pd.Timedelta(hours=s.training_days * 24 - 1)
    in_window = frame.index >= window_start
    cols = [c for c in cols if frame.loc[in_window, c].notna().any()]  # drop series never observed
    bundle = ModelBundle(target=target, exog=cols, horizons=s.horizons, coverage=s.interval_coverage,
                         tier_names=dict(tier_names or {}), seed=s.seed, tuned_=tune)
    builder = bundle.builder
    bundle.feature_names_ = builder.feature_names
    tables = builder.transform(frame[[target, *cols]], range(1, s.horizons + 1))
    y_all = frame[target].astype(float)
    y_window = y_all[in_window]
    ensure_rows(int(y_window.notna().sum()), s.min_training_hours, "training")
    trials = (s.tune_trials or DEFAULT_TUNE_TRIALS) if tune else 0
    n_candidates = len(candidates(y_all.to_numpy(), tables[1].loc[in_window], target))
    steps, done = s.horizons * (n_candidates + trials + 1), 0

    def tick(stage: str) -> None:
        nonlocal done
        done = min(done + 1, steps)
        if progress:
            progress(stage, done, steps)

    snaive_scale = float(np.nanmean(np.abs(y_window - y_window.shift(24))))
    per_h: dict[str, dict] = {}
    for h in range(1, s.horizons + 1):
        yh = y_all.shift(-h).to_numpy()
        rows = in_window & np.isfinite(yh)
        X, y = tables[h].loc[rows], yh[rows]
        ensure_rows(len(y), s.min_training_hours, f"horizon {h}")
        sel = select(X, y, h, target, candidates(y, X, target), trials, s.seed, progress=tick)
        members = [Member(m.transform, m.params, 0 if m.n_rounds == 0 else max(10, int(m.n_rounds * 1.15)))
                   for m in sel.members]
        bundle.boosters_[h] = [fit_final(X, y, m.transform, target, m.params, m.n_rounds, s.seed) for m in members]
        bundle.members_[h] = members
        tick(f"h{h} final fit")
        bundle.intervals_[h] = ConformalInterval(s.interval_coverage).fit(sel.val_scaled_residuals)
        y_val, X_val = y[sel.val_positions], X.iloc[sel.val_positions]
        naive = X_val[f"{target}_same_hour_1d"].to_numpy()
        err = y_val - sel.val_pred
        per_h[str(h)] = {
            "mae": float(np.nanmean(np.abs(err))),
            "rmse": float(np.sqrt(np.nanmean(err**2))),
            "mase": float(np.nanmean(np.abs(err)) / snaive_scale) if snaive_scale > 0 else float("nan"),
            "seasonal_naive_24_mae": float(np.nanmean(np.abs(y_val - naive))),
            "transform": "+".join(m.transform.name + ("(naive)" if m.n_rounds == 0 else "") for m in members),
            "validation_rows": len(y_val),
            "validation_start": X_val.index[0].isoformat(),
        }
    if progress and done < steps:
        progress("done", steps, steps)
    mean = lambda k: float(np.mean([m[k] for m in per_h.values()]))
    bundle.metrics_ = {
        "mean_mae": mean("mae"), "mean_rmse": mean("rmse"), "mean_mase": mean("mase"),
        "seasonal_naive_24_mean_mae": mean("seasonal_naive_24_mae"), "horizons": per_h,
    }
    win = frame.loc[in_window]
    bundle.training_window_ = {"start": win.index[0].isoformat(), "end": win.index[-1].isoformat(),
                               "rows": len(win), "target_rows": int(y_window.notna().sum())}
    bundle.input_ranges_ = {c: _ranges(win[c]) for c in [target, *cols]}
    bundle.spike_threshold_ = float(np.nanquantile(y_window, 0.95))
    return bundle


def _ranges(x: pd.Series) -> dict:
    v = x.astype(float)
    return {"p01": float(np.nanquantile(v, 0.01)), "p99": float(np.nanquantile(v, 0.99)),
            "mean": float(v.mean()), "std": float(v.std()) if v.notna().sum() > 1 else 0.0,
            "missing": float(v.isna().mean())}
