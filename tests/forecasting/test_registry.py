import json
from pathlib import Path

import pytest

from artq.errors import ModelError
from artq.forecasting import registry


@pytest.fixture
def models_dir(tmp_path):
    return tmp_path / "models"


def test_registry_round_trip_predicts_the_same(bundle, small_frame, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    assert info.version == "v0001"
    expected = {f"h{h}.ubj" if i == 0 else f"h{h}_m{i + 1}.ubj" for h, ms in bundle.members_.items() for i in range(len(ms))}
    assert set(info.sha256) == expected | {"metadata.json"} and {f"h{h}.ubj" for h in range(1, 7)} <= expected
    assert not list(Path(info.path).glob("*.pkl"))
    loaded = registry.load(models_dir, "ABP", "v0001", info.sha256)
    origin = small_frame.index[-30].to_pydatetime()
    for a, b in zip(bundle.predict_all(small_frame, origin), loaded.predict_all(small_frame, origin), strict=True):
        assert (a.value, a.lower, a.upper, a.drivers) == (b.value, b.lower, b.upper, b.drivers)
    meta = json.loads((Path(info.path) / "metadata.json").read_text())
    for key in ("feature_names", "training_window", "members", "libraries", "metrics", "intervals"):
        assert meta[key]
    assert "sha256" not in meta  # the hashes live in the database, not beside the files they protect
    assert meta["libraries"]["xgboost"]


def test_load_fails_on_checksum_mismatch(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    artifact = Path(info.path) / "h3.ubj"
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        registry.load(models_dir, "ABP", info.version, info.sha256)
    assert str(exc.value) == ("checksum mismatch for h3.ubj in model version v0001: the file changed after it was "
                              "saved. Do not use it: retrain, or roll back to another version.")


def test_a_rewritten_metadata_file_is_refused_whatever_it_claims(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    meta_path = Path(info.path) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["sha256"] = {}  # what an attacker would write beside a swapped file
    meta["members"]["1"][0]["file"] = "../../../../evil.ubj"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"^checksum mismatch for metadata.json in model version v0001"):
        registry.load(models_dir, "ABP", info.version, info.sha256)


def test_paths_in_metadata_are_confined_to_the_version_directory(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    meta_path = Path(info.path) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["members"]["1"][0]["file"] = "../../../../evil.ubj"
    meta_path.write_text(json.dumps(meta))
    vouched = {**info.sha256, "metadata.json": registry._sha256(meta_path)}  # even with the database row altered too
    with pytest.raises(ModelError, match=r"names a file '../../../../evil.ubj' with no recorded checksum"):
        registry.load(models_dir, "ABP", info.version, vouched)
    with pytest.raises(ModelError, match=r"malformed checksum entry '../evil.ubj'"):
        registry.load(models_dir, "ABP", info.version, {**vouched, "../evil.ubj": "0" * 64})
    with pytest.raises(ModelError, match=r"^`version` must look like v0001"):
        registry.load(models_dir, "ABP", "../../etc", info.sha256)


@pytest.mark.parametrize("expected", [None, {}, {"h1.ubj": {}}], ids=["none", "empty", "not-a-hash"])
def test_load_without_recorded_checksums_is_refused(bundle, models_dir, expected):
    info = registry.save(bundle, models_dir, "ABP")
    with pytest.raises(ModelError, match=r"^model version v0001 has (no recorded checksums|a malformed checksum)"):
        registry.load(models_dir, "ABP", info.version, expected)


def test_load_fails_on_feature_mismatch(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    meta_path = Path(info.path) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][:-1] + ["art_centred_mean_12"]
    meta_path.write_text(json.dumps(meta))
    vouched = {**info.sha256, "metadata.json": registry._sha256(meta_path)}  # as if registered by another artq
    with pytest.raises(ModelError) as exc:
        registry.load(models_dir, "ABP", info.version, vouched)
    assert str(exc.value).startswith("feature mismatch in model version v0001: it was trained on")
    assert str(exc.value).endswith("Retrain the model.")
