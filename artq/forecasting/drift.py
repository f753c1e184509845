"""Drift and staleness: compare recent forecast errors and inputs with the training period.

The pipeline runs :func:`check_drift` periodically and queues ``train`` when ``drifted`` is true,
recording ``reasons``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from artq.errors import InputError
from artq.forecasting.model import ModelBundle
from artq.horizons import RECENT_HOURS
from artq.timeutil import as_utc

YOUNG_RETRAIN_HOURS = 24


@dataclass
class DriftReport:
    drifted: bool
    reasons: list[str] = field(default_factory=list)
    recent_mae: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"drifted": self.drifted, "reasons": list(self.reasons), "recent_mae": dict(self.recent_mae)}


def check_drift(bundle: ModelBundle, frame: pd.DataFrame, *, now: datetime | None = None,
                errors: Mapping[int, Sequence[float]] | None = None, recent_hours: int = RECENT_HOURS,
                error_ratio: float = 1.5, shift_sigmas: float = 3.0, out_of_range_share: float = 0.25,
                max_age_hours: int = 24 * 7) -> DriftReport:
    """Has the world moved away from what ``bundle`` was trained on?

    - **error**: the recent mean absolute error (from ``errors`` — absolute errors per horizon of
      stored forecasts — or, when None, recomputed on the last ``recent_hours`` origins of
      ``frame`` after the training window) exceeds ``error_ratio`` × the validation MAE;
    - **inputs**: a series' recent mean moved more than ``shift_sigmas`` training standard
      deviations, or more than ``out_of_range_share`` of its recent values fall outside the
      training period's 1st..99th percentiles;
    - **staleness**: the training window ended more than ``max_age_hours`` before ``now``, or
      more than ``YOUNG_RETRAIN_HOURS`` when it was trained on a level regime too young for
      models (:mod:`artq.forecasting.regimes`: each day of the new regime is more evidence, and a
      model trained during a long burst should not stay naive for a week once it is over).
    """
    if recent_hours < 1:
        raise InputError(f"`recent_hours` must be >= 1. Got {recent_hours}.")
    if error_ratio <= 1:
        raise InputError(f"`error_ratio` must be > 1. Got {error_ratio}.")
    reasons: list[str] = []
    trained_end = pd.Timestamp(bundle.training_window_["end"])
    now_ts = pd.Timestamp(as_utc(now)) if now else frame.index[-1]
    age = (now_ts - trained_end) / pd.Timedelta(hours=1)
    if age > max_age_hours:
        reasons.append(f"stale: trained on data up to {trained_end.isoformat()}, {age:.0f} h ago (limit {max_age_hours} h).")
    regime = bundle.metrics_.get("regime") if isinstance(bundle.metrics_, dict) else None
    if regime and regime.get("models_wait") and YOUNG_RETRAIN_HOURS < age <= max_age_hours:
        reasons.append(f"young regime: trained {regime['hours']} h into a new level (from {regime['start']}), "
                       f"{age:.0f} h ago; the models wait for a week of it, so it is retrained daily until then.")

    recent = frame.loc[frame.index > now_ts - pd.Timedelta(hours=recent_hours)]
    recent = recent.loc[recent.index <= now_ts]
    for col in [bundle.target, *bundle.exog]:
        ref = bundle.input_ranges_.get(col)
        if ref is None or col not in recent or recent[col].notna().sum() < 3:
            continue
        x = recent[col].astype(float).dropna()
        if ref["std"] > 0 and abs(x.mean() - ref["mean"]) > shift_sigmas * ref["std"]:
            reasons.append(f"input {col}: recent mean {x.mean():.4g} is more than {shift_sigmas:g} training "
                           f"std ({ref['std']:.4g}) from the training mean {ref['mean']:.4g}.")
            continue
        outside = float(((x < ref["p01"]) | (x > ref["p99"])).mean())
        if outside > out_of_range_share:
            reasons.append(f"input {col}: {outside:.0%} of recent values fall outside the training range "
                           f"[{ref['p01']:.4g}, {ref['p99']:.4g}].")

    recent_mae: dict[str, float] = {}
    if errors is None:
        errors = _recent_errors(bundle, frame, now_ts, trained_end, recent_hours)
    for h, errs in sorted(errors.items()):
        e = np.abs(np.asarray(errs, dtype=float))
        e = e[np.isfinite(e)]
        ref = bundle.metrics_.get("horizons", {}).get(str(h), {}).get("mae")
        if len(e) == 0 or not ref:
            continue
        recent_mae[str(h)] = float(e.mean())
        if e.mean() > error_ratio * ref:
            reasons.append(f"error h{h}: recent MAE {e.mean():.4g} over {len(e)} forecasts is more than "
                           f"{error_ratio:g}x the validation MAE {ref:.4g}.")
    return DriftReport(bool(reasons), reasons, recent_mae)


def _recent_errors(bundle: ModelBundle, frame: pd.DataFrame, now: pd.Timestamp, trained_end: pd.Timestamp,
                   recent_hours: int) -> dict[int, np.ndarray]:
    y = frame[bundle.target].astype(float)
    start = max(trained_end, now - pd.Timedelta(hours=recent_hours))
    out: dict[int, np.ndarray] = {}
    origins = frame.index[(frame.index > start) & (frame.index <= now - pd.Timedelta(hours=1))]
    if len(origins) == 0:
        return out
    preds = bundle.predict_frame(frame.loc[:now], origins)
    for h, df in preds.items():
        when = origins + pd.Timedelta(hours=h)
        keep = when <= now
        out[h] = (y.reindex(when[keep]).to_numpy() - df["value"].to_numpy()[keep])
    return out
