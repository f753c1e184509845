"""Model versions on disk: XGBoost's own UBJ files plus a metadata file, never pickle.

Layout::

    <models_dir>/<application>/versions/<version>/h1.ubj .. h6.ubj   XGBoost's own UBJ format
    <models_dir>/<application>/versions/<version>/metadata.json        features, window, params, metrics

This module only writes and reads files. Which version serves, and the sha256 of every file of
every version, live in the database (``artq.pipeline.champions``): the integrity anchor is
outside the files it protects, so a changed file with a recomputed hash beside it is still
refused. :func:`load` takes those expected hashes, confines every path to the version's own
directory, checks the feature list against what the code builds today, and raises
:class:`ModelError` with the fix on any mismatch.
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
from collections.abc import Mapping
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
METADATA = "metadata.json"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_ARTIFACT_RE = re.compile(r"^h[1-9](_m[0-9]+)?\.ubj$")  # plain names only: nothing can point outside


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


def _metadata(bundle: ModelBundle, version: str, created_at: str) -> dict:
    return {
        "format": FORMAT, "version": version, "created_at": created_at,
        "target": bundle.target, "exog": bundle.exog, "horizons": bundle.horizons,
        "features_version": FEATURES_VERSION, "feature_names": bundle.feature_names_,
        "tier_names": bundle.tier_names, "coverage": bundle.coverage, "seed": bundle.seed,
        "tuned": bundle.tuned_, "training_window": bundle.training_window_,
        "members": {str(h): [{"transform": m.transform.name, "params": m.params, "n_rounds": m.n_rounds,
                              "weight": m.weight, "file": _artifact(h, i)} for i, m in enumerate(ms)]
                    for h, ms in bundle.members_.items()},
        "intervals": {str(h): i.as_dict() for h, i in bundle.intervals_.items()},
        "metrics": bundle.metrics_, "input_ranges": bundle.input_ranges_,
        "spike_threshold": bundle.spike_threshold_, "unit": bundle.unit_,
        "libraries": {"xgboost": xgb.__version__, "pandas": pd.__version__, "numpy": np.__version__,
                      "scikit-learn": sklearn.__version__, "python": platform.python_version()},
    }


def save(bundle: ModelBundle, models_dir: str | os.PathLike, application: str) -> VersionInfo:
    """Write a new version (never overwrites one). Returns the sha256 of every file written,
    which the caller stores in the database; saving alone never makes a version serve."""
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
    meta = _metadata(bundle, version, created_at)
    _write_atomic(path / METADATA, json.dumps(meta, indent=2, sort_keys=True))
    sha[METADATA] = _sha256(path / METADATA)
    bundle.version = version
    return VersionInfo(version, str(path), bundle.metrics_, created_at, sha)


def version_dir(models_dir: str | os.PathLike, application: str, version: str) -> Path:
    """The directory of ``version``, checked to be a plain version name under the application's folder."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ModelError(f"`version` must look like v0001. Got {version!r}.")
    return _app_dir(models_dir, application) / "versions" / version


def verify(path: Path, version: str, expected: Mapping[str, str] | None) -> None:
    """Every file named in ``expected`` exists under ``path`` with that sha256 (one-line ModelError if not)."""
    if not isinstance(expected, Mapping) or METADATA not in expected or not expected:
        raise ModelError(
            f"model version {version} has no recorded checksums in the database (registered before they were "
            "kept there, or the row was altered). Retrain, or promote another version."
        )
    for name, digest in expected.items():
        if not isinstance(name, str) or not (name == METADATA or _ARTIFACT_RE.match(name)) or not isinstance(digest, str):
            raise ModelError(f"model version {version} has a malformed checksum entry {name!r}; refusing to load it.")
        artifact = path / name
        if not artifact.is_file():
            raise ModelError(f"model version {version} is missing {name}; the version is incomplete. Retrain or roll back.")
        if _sha256(artifact) != digest:
            raise ModelError(
                f"checksum mismatch for {name} in model version {version}: the file changed after it was "
                "saved. Do not use it: retrain, or roll back to another version."
            )


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads((path / METADATA).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model version at {path} has no {METADATA}; it is incomplete. Delete it or retrain.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path / METADATA} is not valid JSON ({type(exc).__name__}); the version is corrupt. Retrain.") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path / METADATA} does not hold a mapping; the version is corrupt. Retrain.")
    return meta


def load(models_dir: str | os.PathLike, application: str, version: str, expected: Mapping[str, str] | None) -> ModelBundle:
    """Load ``version``, refusing it unless every file matches ``expected`` (the sha256 map kept in
    the database) and the features match what this artq builds."""
    path = version_dir(models_dir, application, version)
    if not path.is_dir():
        raise ModelError(f"unknown model version {version!r} for {application} in {models_dir}.")
    verify(path, version, expected)
    meta = _read_meta(path)
    if meta.get("format") != FORMAT:
        raise ModelError(f"model version {version} has format {meta.get('format')!r}; this artq reads {FORMAT}. Retrain.")
    try:
        return _bundle_from(meta, path, version, set(expected or ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path / METADATA} is malformed ({type(exc).__name__}: {exc}); the version is corrupt. Retrain.") from None


def _bundle_from(meta: dict, path: Path, version: str, verified: set[str]) -> ModelBundle:
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
    # one thread: XGBoost's default OpenMP pool made each load_model ~7 ms instead of ~0.3 ms on a
    # busy 2-core machine (the idle threads spin); a worker's cold start loads thousands of files
    with xgb.config_context(nthread=1):
        _load_boosters(meta, path, version, verified, bundle, names)
    bundle.metrics_, bundle.training_window_ = meta["metrics"], meta["training_window"]
    bundle.input_ranges_, bundle.spike_threshold_ = meta["input_ranges"], float(meta["spike_threshold"])
    bundle.unit_ = float(meta.get("unit", 1.0))  # versions saved before model units: 1.0, as they were trained
    bundle.tuned_ = bool(meta["tuned"])
    return bundle


def _load_boosters(meta: dict, path: Path, version: str, verified: set[str], bundle: ModelBundle, names: list[str]) -> None:
    for h in range(1, bundle.horizons + 1):
        members, boosters = [], []
        for spec in meta["members"][str(h)]:
            if spec["file"] not in verified:  # only files whose hash the database vouches for
                raise ModelError(f"model version {version} names a file {spec['file']!r} with no recorded checksum; refusing it.")
            booster = xgb.Booster()
            booster.load_model(str(path / spec["file"]))
            if list(booster.feature_names or []) != names:
                raise ModelError(
                    f"feature mismatch in model version {version}: {spec['file']} expects features that differ "
                    "from metadata.json's feature list. Retrain the model."
                )
            boosters.append(booster)
            members.append(Member(TargetTransform.from_name(spec["transform"]), spec["params"], int(spec["n_rounds"]),
                                  weight=float(spec.get("weight", 1.0))))  # versions before weights: equal shares
        bundle.members_[h], bundle.boosters_[h] = members, boosters
        bundle.intervals_[h] = ConformalInterval.from_dict(meta["intervals"][str(h)])


def read_metadata(path: Path) -> dict:
    """The metadata of the version at ``path`` (call :func:`verify` first to trust it)."""
    return _read_meta(path)
