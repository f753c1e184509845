"""Model versions on disk, with a champion pointer per application.

Layout::

    <models_dir>/<application>/versions/<version>/h1.ubj .. h6.ubj   XGBoost's own UBJ format
    <models_dir>/<application>/versions/<version>/metadata.json        features, window, params,
                                                                       metrics, sha256 per artifact
    <models_dir>/<application>/champion.json                           written atomically

Never pickle. :func:`load` verifies every artifact's sha256 and the feature list against what the
code builds today, and raises :class:`ModelError` with the fix on any mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn
import xgboost as xgb

from artq.errors import ModelError
from artq.forecasting.features import FEATURES_VERSION, FeatureBuilder
from artq.forecasting.intervals import ConformalInterval
from artq.forecasting.model import ModelBundle
from artq.forecasting.transforms import TargetTransform
from artq.forecasting.tuning import Member

FORMAT = 2
_VERSION_RE = re.compile(r"^v(\d{4,})$")


@dataclass
class VersionInfo:
    version: str
    path: str
    metrics: dict
    created_at: str
    sha256: dict = field(default_factory=dict)


def _app_dir(models_dir: str | os.PathLike, application: str) -> Path:
    if not application or not re.fullmatch(r"[A-Za-z0-9._-]+", application):
        raise ModelError(f"`application` must be a non-empty name of letters, digits, '.', '_' or '-'. Got {application!r}.")
    return Path(models_dir) / application


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _new_version_dir(app_dir: Path) -> tuple[str, Path]:
    versions = app_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    while True:  # mkdir is atomic: two concurrent saves never get the same number
        numbers = [int(m.group(1)) for p in versions.iterdir() if (m := _VERSION_RE.match(p.name))]
        version = f"v{max(numbers, default=0) + 1:04d}"
        try:
            (versions / version).mkdir()
            return version, versions / version
        except FileExistsError:
            continue


def _artifact(horizon: int, member: int) -> str:
    return f"h{horizon}.ubj" if member == 0 else f"h{horizon}_m{member + 1}.ubj"


def _metadata(bundle: ModelBundle, version: str, created_at: str, sha: dict) -> dict:
    return {
        "format": FORMAT, "version": version, "created_at": created_at,
        "target": bundle.target, "exog": bundle.exog, "horizons": bundle.horizons,
        "features_version": FEATURES_VERSION, "feature_names": bundle.feature_names_,
        "tier_names": bundle.tier_names, "coverage": bundle.coverage, "seed": bundle.seed,
        "tuned": bundle.tuned_, "training_window": bundle.training_window_,
        "members": {str(h): [{"transform": m.transform.name, "params": m.params, "n_rounds": m.n_rounds,
                              "file": _artifact(h, i)} for i, m in enumerate(ms)]
                    for h, ms in bundle.members_.items()},
        "intervals": {str(h): i.as_dict() for h, i in bundle.intervals_.items()},
        "metrics": bundle.metrics_, "input_ranges": bundle.input_ranges_,
        "spike_threshold": bundle.spike_threshold_,
        "libraries": {"xgboost": xgb.__version__, "pandas": pd.__version__, "numpy": np.__version__,
                      "scikit-learn": sklearn.__version__, "python": platform.python_version()},
        "sha256": sha,
    }


def save(bundle: ModelBundle, models_dir: str | os.PathLike, application: str) -> VersionInfo:
    """Write a new version (never overwrites one); does not change the champion."""
    if not bundle.boosters_:
        raise ModelError("`bundle` is not trained: call train_bundle() before saving it.")
    version, path = _new_version_dir(_app_dir(models_dir, application))
    sha = {}
    for h, boosters in sorted(bundle.boosters_.items()):
        for i, booster in enumerate(boosters):
            artifact = path / _artifact(h, i)
            booster.save_model(str(artifact))
            sha[artifact.name] = _sha256(artifact)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    meta = _metadata(bundle, version, created_at, sha)
    _write_atomic(path / "metadata.json", json.dumps(meta, indent=2, sort_keys=True))
    bundle.version = version
    return VersionInfo(version, str(path), bundle.metrics_, created_at, sha)


def _read_meta(path: Path) -> dict:
    try:
        return json.loads((path / "metadata.json").read_text())
    except FileNotFoundError:
        raise ModelError(f"model version at {path} has no metadata.json; it is incomplete. Delete it or retrain.") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path / 'metadata.json'} is not valid JSON ({exc.msg}); the version is corrupt. Retrain.") from None


def list_versions(models_dir: str | os.PathLike, application: str) -> list[VersionInfo]:
    versions = _app_dir(models_dir, application) / "versions"
    out = []
    for p in sorted(versions.iterdir() if versions.is_dir() else [], key=lambda p: p.name):
        if _VERSION_RE.match(p.name) and (p / "metadata.json").is_file():
            m = _read_meta(p)
            out.append(VersionInfo(p.name, str(p), m.get("metrics", {}), m.get("created_at", ""), m.get("sha256", {})))
    return out


def champion(models_dir: str | os.PathLike, application: str) -> str | None:
    pointer = _app_dir(models_dir, application) / "champion.json"
    if not pointer.is_file():
        return None
    try:
        return json.loads(pointer.read_text())["version"]
    except (json.JSONDecodeError, KeyError):
        raise ModelError(f"{pointer} is corrupt; fix it with `promote` or `rollback` to a named version.") from None


def promote(models_dir: str | os.PathLike, application: str, version: str, reason: str = "promoted by hand") -> None:
    """Make ``version`` the champion (atomic pointer swap)."""
    app_dir = _app_dir(models_dir, application)
    if not (app_dir / "versions" / version / "metadata.json").is_file():
        known = ", ".join(v.version for v in list_versions(models_dir, application)) or "none"
        raise ModelError(f"unknown model version {version!r} for {application}; known versions: {known}.")
    pointer = {"version": version, "previous": champion(models_dir, application), "reason": reason,
               "promoted_at": datetime.now(UTC).isoformat(timespec="seconds")}
    _write_atomic(app_dir / "champion.json", json.dumps(pointer, indent=2))


def rollback(models_dir: str | os.PathLike, application: str, version: str) -> None:
    promote(models_dir, application, version, reason=f"rollback to {version}")


def load(models_dir: str | os.PathLike, application: str, version: str | None = None) -> ModelBundle:
    """Load a version (the champion when ``version`` is None), verifying checksums and features."""
    app_dir = _app_dir(models_dir, application)
    version = version or champion(models_dir, application)
    if version is None:
        raise ModelError(f"no champion model for {application} in {models_dir}; run `artq train` first.")
    path = app_dir / "versions" / version
    if not path.is_dir():
        raise ModelError(f"unknown model version {version!r} for {application} in {models_dir}.")
    meta = _read_meta(path)
    if meta.get("format") != FORMAT:
        raise ModelError(f"model version {version} has format {meta.get('format')!r}; this artq reads {FORMAT}. Retrain.")
    for name, expected in meta["sha256"].items():
        artifact = path / name
        if not artifact.is_file():
            raise ModelError(f"model version {version} is missing {name}; the version is incomplete. Retrain or roll back.")
        if _sha256(artifact) != expected:
            raise ModelError(
                f"checksum mismatch for {name} in model version {version}: the file changed after it was "
                "saved. Do not use it: retrain, or roll back to another version."
            )
    names = meta["feature_names"]
    expected_names = FeatureBuilder(meta["target"], meta["exog"]).feature_names
    if meta.get("features_version") != FEATURES_VERSION or names != expected_names:
        raise ModelError(
            f"feature mismatch in model version {version}: it was trained on {len(names)} features that "
            f"this artq no longer builds the same way (features version {meta.get('features_version')} vs "
            f"{FEATURES_VERSION}). Retrain the model."
        )
    bundle = ModelBundle(target=meta["target"], exog=list(meta["exog"]), horizons=int(meta["horizons"]),
                         coverage=float(meta["coverage"]), tier_names=dict(meta["tier_names"]),
                         seed=int(meta["seed"]), version=version)
    bundle.feature_names_ = list(names)
    for h in range(1, bundle.horizons + 1):
        members, boosters = [], []
        for spec in meta["members"][str(h)]:
            booster = xgb.Booster()
            booster.load_model(str(path / spec["file"]))
            if list(booster.feature_names or []) != names:
                raise ModelError(
                    f"feature mismatch in model version {version}: {spec['file']} expects features that differ "
                    "from metadata.json's feature list. Retrain the model."
                )
            boosters.append(booster)
            members.append(Member(TargetTransform.from_name(spec["transform"]), spec["params"], int(spec["n_rounds"])))
        bundle.members_[h], bundle.boosters_[h] = members, boosters
        bundle.intervals_[h] = ConformalInterval.from_dict(meta["intervals"][str(h)])
    bundle.metrics_, bundle.training_window_ = meta["metrics"], meta["training_window"]
    bundle.input_ranges_, bundle.spike_threshold_ = meta["input_ranges"], float(meta["spike_threshold"])
    bundle.tuned_ = bool(meta["tuned"])
    return bundle


def register(bundle: ModelBundle, models_dir: str | os.PathLike, application: str) -> tuple[VersionInfo, bool, str]:
    """Save ``bundle`` and promote it only if it beats the champion and the seasonal-naive baseline.

    Versions are compared on validation MASE (MAE over the training window's seasonal-naive-24
    MAE), which is scale-free and so comparable across different training windows.
    """
    info = save(bundle, models_dir, application)
    m = bundle.metrics_
    mae, naive, mase = m["mean_mae"], m["seasonal_naive_24_mean_mae"], m["mean_mase"]
    if not mae < naive:
        return info, False, (f"kept, not promoted: validation MAE {mae:.4g} does not beat seasonal-naive-24 "
                             f"MAE {naive:.4g} on the same hours.")
    current = champion(models_dir, application)
    if current is not None:
        old = _read_meta(_app_dir(models_dir, application) / "versions" / current)["metrics"]
        if not mase < old.get("mean_mase", float("inf")):
            return info, False, (f"kept, not promoted: validation MASE {mase:.4g} does not beat champion "
                                 f"{current}'s {old['mean_mase']:.4g}.")
        reason = f"promoted: validation MASE {mase:.4g} beats champion {current}'s {old['mean_mase']:.4g}."
    else:
        reason = f"promoted: first version; validation MAE {mae:.4g} beats seasonal-naive-24 {naive:.4g}."
    promote(models_dir, application, info.version, reason)
    return info, True, reason
