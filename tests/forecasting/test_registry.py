import copy
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
    assert set(info.sha256) == expected and {f"h{h}.ubj" for h in range(1, 7)} <= expected
    assert not list(Path(info.path).glob("*.pkl"))
    loaded = registry.load(models_dir, "ABP", "v0001")
    origin = small_frame.index[-30].to_pydatetime()
    for a, b in zip(bundle.predict_all(small_frame, origin), loaded.predict_all(small_frame, origin), strict=True):
        assert (a.value, a.lower, a.upper, a.drivers) == (b.value, b.lower, b.upper, b.drivers)
    meta = json.loads((Path(info.path) / "metadata.json").read_text())
    for key in ("feature_names", "training_window", "members", "libraries", "metrics", "intervals", "sha256"):
        assert meta[key]
    assert meta["libraries"]["xgboost"]
    assert [v.version for v in registry.list_versions(models_dir, "ABP")] == ["v0001"]


def test_load_fails_on_checksum_mismatch(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    artifact = Path(info.path) / "h3.ubj"
    data = bytearray(artifact.read_bytes())
    data[-10] ^= 0xFF
    artifact.write_bytes(bytes(data))
    with pytest.raises(ModelError) as exc:
        registry.load(models_dir, "ABP", info.version)
    assert str(exc.value) == ("checksum mismatch for h3.ubj in model version v0001: the file changed after it was "
                              "saved. Do not use it: retrain, or roll back to another version.")


def test_load_fails_on_feature_mismatch(bundle, models_dir):
    info = registry.save(bundle, models_dir, "ABP")
    meta_path = Path(info.path) / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][:-1] + ["art_centred_mean_12"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ModelError) as exc:
        registry.load(models_dir, "ABP", info.version)
    assert str(exc.value).startswith("feature mismatch in model version v0001: it was trained on")
    assert str(exc.value).endswith("Retrain the model.")


def test_load_without_champion_says_how_to_fix(models_dir):
    with pytest.raises(ModelError) as exc:
        registry.load(models_dir, "ABP")
    assert str(exc.value) == f"no champion model for ABP in {models_dir}; run `artq train` first."


def _with_mase(bundle, mase):
    b = copy.copy(bundle)
    b.metrics_ = {**bundle.metrics_, "mean_mase": mase}
    return b


def test_champion_challenger_keeps_the_better_model(bundle, models_dir):
    first, promoted, reason = registry.register(_with_mase(bundle, 0.5), models_dir, "ABP")
    assert promoted and registry.champion(models_dir, "ABP") == first.version
    assert reason.startswith("promoted: first version")
    _, promoted, reason = registry.register(_with_mase(bundle, 0.7), models_dir, "ABP")
    assert not promoted
    assert reason == "kept, not promoted: validation MASE 0.7 does not beat champion v0001's 0.5."
    assert registry.champion(models_dir, "ABP") == "v0001"
    assert registry.load(models_dir, "ABP").version == "v0001"
    better, promoted, _ = registry.register(_with_mase(bundle, 0.4), models_dir, "ABP")
    assert promoted and registry.champion(models_dir, "ABP") == better.version == "v0003"
    assert [v.version for v in registry.list_versions(models_dir, "ABP")] == ["v0001", "v0002", "v0003"]


def test_challenger_that_loses_to_seasonal_naive_is_kept_not_promoted(bundle, models_dir):
    b = copy.copy(bundle)
    b.metrics_ = {**bundle.metrics_, "mean_mae": 99.0, "seasonal_naive_24_mean_mae": 50.0}
    _, promoted, reason = registry.register(b, models_dir, "ABP")
    assert not promoted and registry.champion(models_dir, "ABP") is None
    assert reason == "kept, not promoted: validation MAE 99 does not beat seasonal-naive-24 MAE 50 on the same hours."


def test_rollback_to_a_named_version(bundle, models_dir):
    registry.register(_with_mase(bundle, 0.5), models_dir, "ABP")
    registry.register(_with_mase(bundle, 0.4), models_dir, "ABP")
    assert registry.champion(models_dir, "ABP") == "v0002"
    registry.rollback(models_dir, "ABP", "v0001")
    assert registry.champion(models_dir, "ABP") == "v0001"
    pointer = json.loads((models_dir / "ABP" / "champion.json").read_text())
    assert pointer["previous"] == "v0002" and pointer["reason"] == "rollback to v0001"
    assert not list((models_dir / "ABP").glob("*.tmp"))
    with pytest.raises(ModelError) as exc:
        registry.rollback(models_dir, "ABP", "v0099")
    assert str(exc.value) == "unknown model version 'v0099' for ABP; known versions: v0001, v0002."
