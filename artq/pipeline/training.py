"""Retraining: fit six horizon models on the stored history, register, promote if better."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from artq.catalog import TARGET_METRIC, server_slug
from artq.errors import NotEnoughData
from artq.pipeline import champions
from artq.pipeline.runtime import Runtime
from artq.storage import repository as repo
from artq.timeutil import last_complete_hour


def train_step(rt: Runtime, application: str, *, tune: bool | None = None, until: datetime | None = None,
               progress=None) -> dict[str, Any]:
    """Train on the last ``training_days`` before ``until`` (default: now) and register a version.

    A retrain on exactly the inputs of the latest version (same hours, same values, same
    settings) registers nothing and says so: XGBoost is seeded, so it would only repeat itself.
    """
    from artq.forecasting import train_bundle
    from artq.forecasting.features import FEATURES_VERSION

    app = rt.application(application)
    fs = rt.settings.forecast
    end = until or last_complete_hour()
    start = end - timedelta(days=fs.training_days) + timedelta(hours=1)
    with rt.db.session() as s:
        frame = repo.load_frame(s, application, start, end)
    observed = int(frame[TARGET_METRIC].notna().sum()) if TARGET_METRIC in frame else 0
    if observed < fs.min_training_hours:
        raise NotEnoughData(
            f"application {application!r} has {observed} hours of {TARGET_METRIC} history up to "
            f"{end.isoformat()}; training needs at least {fs.min_training_hours}. "
            f"Run `artq backfill --app {application} --days {max(fs.min_training_hours // 24 + 1, 14)}` first."
        )
    frame = frame.loc[frame[TARGET_METRIC].first_valid_index():]
    tune = bool(fs.tune_trials) if tune is None else tune
    tiers = {server_slug(t): t for t in app.tiers}
    fingerprint = training_fingerprint(frame, {"forecast": asdict(fs), "tune": tune, "tiers": tiers,
                                               "features": FEATURES_VERSION})
    with rt.db.session() as s:
        same = champions.unchanged_since(s, application, fingerprint)
        if same is not None:
            current = champions.champion(s, application)
            return {"application": application, "version": same.version, "promoted": False, "registered": False,
                    "reason": (f"unchanged: {same.version} was trained on the same hours, values and settings; nothing "
                               f"registered (champion: {current or 'none'})."), "metrics": same.metrics or {}}
    bundle = train_bundle(frame, target=TARGET_METRIC, settings=fs, tune=tune, progress=progress, tier_names=tiers)
    with rt.db.session() as s:
        reg = champions.register(s, bundle, rt.settings.models_dir, application, fingerprint=fingerprint,
                                 training_start=frame.index[0].to_pydatetime(), training_end=frame.index[-1].to_pydatetime())
    rt.forget_models()
    return {"application": application, "version": reg.version, "promoted": reg.promoted, "registered": True,
            "reason": reg.reason, "metrics": reg.metrics}


def training_fingerprint(frame: pd.DataFrame, settings: dict) -> str:
    """sha256 over the training frame (index, columns, values) and the settings that shape the model."""
    h = hashlib.sha256()
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    h.update(json.dumps([str(c) for c in frame.columns]).encode())
    h.update(frame.index.asi8.tobytes())
    h.update(frame.to_numpy(dtype=float).tobytes())
    return h.hexdigest()
