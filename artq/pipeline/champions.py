"""Model versions in the database: registration, the champion pointer, integrity anchors.

The ``champions`` table holds the one version that serves each application; promote, rollback
and a successful training change it in one transaction together with the version rows, so
nothing can leave two homes disagreeing. Each ``model_versions`` row keeps the sha256 of every
file of its version: :func:`load_version` refuses files that do not match, whatever the
files themselves claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.errors import ModelError
from artq.forecasting import registry
from artq.forecasting.model import ModelBundle
from artq.storage.db import upsert
from artq.storage.models import Champion, ModelVersion
from artq.timeutil import as_utc, utcnow

PROMOTED, KEPT = "promoted", "kept"


@dataclass
class Registration:
    version: str
    promoted: bool
    reason: str
    metrics: dict
    registered: bool = True  # False: the training inputs were unchanged, nothing new was written


def champion(session: Session, application: str) -> str | None:
    return session.scalar(select(Champion.version).where(Champion.application == application))


def champions(session: Session, applications: list[str]) -> dict[str, str]:
    """``{application: champion version}`` for those that have one, in one query."""
    if not applications:
        return {}
    rows = session.execute(select(Champion.application, Champion.version).where(Champion.application.in_(applications)))
    return dict(rows.all())


def version_row(session: Session, application: str, version: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.application == application, ModelVersion.version == version))


def versions(session: Session, application: str) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).where(ModelVersion.application == application)
                                .order_by(ModelVersion.version)))


def load_version(session: Session, models_dir: str, application: str, version: str) -> ModelBundle:
    """The bundle of ``version``, its files checked against the hashes recorded at registration."""
    row = version_row(session, application, version)
    if row is None:
        raise ModelError(f"model version {version} of {application} is not registered in the database; "
                         f"see `artq models list --app {application}`.")
    return registry.load(models_dir, application, version, row.sha256)


def set_champion(session: Session, application: str, version: str, reason: str) -> None:
    """Point ``application`` at ``version`` (it must be registered and intact on disk)."""
    if version_row(session, application, version) is None:
        known = ", ".join(r.version for r in versions(session, application)) or "none"
        raise ModelError(f"unknown model version {version!r} for {application}; known versions: {known}.")
    current = session.get(Champion, application)
    now = utcnow()
    if current is None:
        session.add(Champion(application=application, version=version, previous=None, reason=reason, promoted_at=now))
    elif current.version != version:
        current.previous, current.version, current.reason, current.promoted_at = current.version, version, reason, now


def promote(session: Session, models_dir: str, application: str, version: str, reason: str = "promoted by hand") -> None:
    """Make ``version`` the champion after checking its files (a tampered version is never promoted)."""
    load_version(session, models_dir, application, version)
    set_champion(session, application, version, reason)


def rollback(session: Session, models_dir: str, application: str, version: str) -> None:
    promote(session, models_dir, application, version, reason=f"rollback to {version}")


def unchanged_since(session: Session, application: str, fingerprint: str) -> ModelVersion | None:
    """The newest version trained on exactly these inputs, if the latest one was."""
    latest = session.scalar(select(ModelVersion).where(ModelVersion.application == application)
                            .order_by(ModelVersion.version.desc()).limit(1))
    return latest if latest is not None and latest.fingerprint == fingerprint else None


def register(session: Session, bundle: ModelBundle, models_dir: str, application: str, *, fingerprint: str | None,
             training_start: datetime, training_end: datetime) -> Registration:
    """Save ``bundle``, record it, and promote it only if it beats the champion and is no worse than seasonal naive.

    Versions are compared on validation MASE (MAE over the training window's seasonal-naive-24
    MAE), which is scale-free and so comparable across training windows. The row, its reason and
    the champion pointer are written in the caller's transaction.
    """
    info = registry.save(bundle, models_dir, application)
    promoted, reason = _verdict(session, bundle.metrics_, application)
    upsert(session, ModelVersion.__table__, [dict(
        application=application, version=info.version, status=PROMOTED if promoted else KEPT, path=info.path,
        created_at=as_utc(datetime.fromisoformat(info.created_at)), training_start=training_start,
        training_end=training_end, metrics=jsonable(info.metrics), reason=reason, sha256=info.sha256,
        fingerprint=fingerprint,
    )], keys=("application", "version"))
    if promoted:
        set_champion(session, application, info.version, reason)
    return Registration(info.version, promoted, reason, jsonable(info.metrics))


def _verdict(session: Session, metrics: dict, application: str) -> tuple[bool, str]:
    mae, naive, mase = metrics["mean_mae"], metrics["seasonal_naive_24_mean_mae"], metrics["mean_mase"]
    if mae > naive:  # equal is fine: the guardrail may ship the seasonal-naive forecast itself
        return False, (f"kept, not promoted: validation MAE {mae:.4g} is worse than seasonal-naive-24 "
                       f"MAE {naive:.4g} on the same hours.")
    current = champion(session, application)
    if current is None:
        return True, f"promoted: first version; validation MAE {mae:.4g} vs seasonal-naive-24 {naive:.4g}."
    row = version_row(session, application, current)
    old = (row.metrics or {}).get("mean_mase", float("inf")) if row is not None else float("inf")
    if not mase < old:
        return False, f"kept, not promoted: validation MASE {mase:.4g} does not beat champion {current}'s {old:.4g}."
    return True, f"promoted: validation MASE {mase:.4g} beats champion {current}'s {old:.4g}."


def jsonable(obj):
    """Plain JSON types (NumPy scalars become Python numbers)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item"):
        return obj.item()
    return obj
