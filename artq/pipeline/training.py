"""Retraining: fit six horizon models on the stored history, register, promote if better."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from artq.catalog import TARGET_METRIC, server_slug
from artq.errors import NotEnoughData
from artq.pipeline.runtime import Runtime
from artq.storage import repository as repo
from artq.timeutil import as_utc, last_complete_hour


def train_step(rt: Runtime, application: str, *, tune: bool | None = None, until: datetime | None = None, progress=None) -> dict[str, Any]:
    """Train on the last ``training_days`` before ``until`` (default: now) and register a version."""
    from artq.forecasting import registry, train_bundle

    app = rt.settings.application(application)
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
    bundle = train_bundle(frame, target=TARGET_METRIC, settings=fs, tune=bool(fs.tune_trials) if tune is None else tune,
                          progress=progress, tier_names={server_slug(t): t for t in app.tiers})
    info, promoted, reason = registry.register(bundle, rt.settings.models_dir, application)
    with rt.db.session() as s:
        repo.record_model_version(
            s,
            dict(
                application=application, version=info.version, status="champion" if promoted else "challenger",
                path=str(info.path), created_at=_aware(info.created_at), training_start=frame.index[0].to_pydatetime(),
                training_end=frame.index[-1].to_pydatetime(), metrics=_jsonable(info.metrics), reason=reason,
            ),
        )
        if promoted:
            repo.set_champion(s, application, info.version)
    rt.forget_models()
    return {"application": application, "version": info.version, "promoted": promoted, "reason": reason, "metrics": _jsonable(info.metrics)}


def _aware(value: datetime | str) -> datetime:
    return as_utc(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
