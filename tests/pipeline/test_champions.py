"""Model versions in the database: one champion pointer, integrity anchored in model_versions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from artq.errors import ModelError
from artq.pipeline import champions
from artq.storage import migrate, open_database
from artq.storage.models import Champion
from tests.forecasting.conftest import SMALL, make_frame

START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def bundle():
    from artq.forecasting import train_bundle

    return train_bundle(make_frame(24 * 24, seed=3).iloc[: -48], "art", SMALL)


@pytest.fixture
def db(any_db_url):
    database = open_database(any_db_url)
    yield database
    database.dispose()


def _with_mase(bundle, mase):
    b = copy.copy(bundle)
    b.metrics_ = {**bundle.metrics_, "mean_mase": mase}
    return b


def register(db, bundle, models_dir, fingerprint=None):
    with db.session() as s:
        return champions.register(s, bundle, str(models_dir), "ABP", fingerprint=fingerprint,
                                  training_start=START, training_end=END)


def champion(db):
    with db.session() as s:
        return champions.champion(s, "ABP")


def test_champion_challenger_keeps_the_better_model(db, bundle, tmp_path):
    first = register(db, _with_mase(bundle, 0.5), tmp_path)
    assert first.promoted and champion(db) == first.version and first.reason.startswith("promoted: first version")
    kept = register(db, _with_mase(bundle, 0.7), tmp_path)
    assert not kept.promoted
    assert kept.reason == "kept, not promoted: validation MASE 0.7 does not beat champion v0001's 0.5."
    assert champion(db) == "v0001"
    better = register(db, _with_mase(bundle, 0.4), tmp_path)
    assert better.promoted and champion(db) == better.version == "v0003"
    with db.session() as s:
        rows = champions.versions(s, "ABP")
        assert [(r.version, r.status) for r in rows] == [("v0001", "promoted"), ("v0002", "kept"), ("v0003", "promoted")]
        assert all(r.reason and r.sha256 and "metadata.json" in r.sha256 for r in rows)
        assert s.scalar(select(func.count()).select_from(Champion)) == 1  # one pointer, never two


def test_a_model_that_loses_to_seasonal_naive_is_kept_not_promoted(db, bundle, tmp_path):
    b = copy.copy(bundle)
    b.metrics_ = {**bundle.metrics_, "mean_mae": 99.0, "seasonal_naive_24_mean_mae": 50.0}
    out = register(db, b, tmp_path)
    assert not out.promoted and champion(db) is None
    assert out.reason == "kept, not promoted: validation MAE 99 is worse than seasonal-naive-24 MAE 50 on the same hours."


def test_a_first_model_that_ships_the_seasonal_naive_forecast_is_promoted(db, bundle, tmp_path):
    b = copy.copy(bundle)
    b.metrics_ = {**bundle.metrics_, "mean_mae": 50.0, "seasonal_naive_24_mean_mae": 50.0}  # the guardrail chose it
    assert register(db, b, tmp_path).promoted and champion(db) == "v0001"


def test_rollback_to_a_named_version_and_unknown_versions_refused(db, bundle, tmp_path):
    register(db, _with_mase(bundle, 0.5), tmp_path)
    register(db, _with_mase(bundle, 0.4), tmp_path)
    with db.session() as s:
        champions.rollback(s, str(tmp_path), "ABP", "v0001")
    with db.session() as s:
        row = s.get(Champion, "ABP")
        assert (row.version, row.previous, row.reason) == ("v0001", "v0002", "rollback to v0001")
    with pytest.raises(ModelError) as exc, db.session() as s:
        champions.rollback(s, str(tmp_path), "ABP", "v0099")
    assert str(exc.value) == "model version v0099 of ABP is not registered in the database; see `artq models list --app ABP`."
    assert champion(db) == "v0001"


def test_a_tampered_version_is_never_promoted_nor_loaded(db, bundle, tmp_path):
    register(db, _with_mase(bundle, 0.5), tmp_path)
    second = register(db, _with_mase(bundle, 0.6), tmp_path)
    artifact = Path(tmp_path) / "ABP" / "versions" / second.version / "h2.ubj"
    artifact.write_bytes(artifact.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(ModelError, match="^checksum mismatch for h2.ubj in model version v0002"), db.session() as s:
        champions.promote(s, str(tmp_path), "ABP", second.version)
    assert champion(db) == "v0001"
    with db.session() as s:
        assert champions.load_version(s, str(tmp_path), "ABP", "v0001").version == "v0001"


def test_the_migration_carries_an_old_champion_row_over(tmp_path):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate(url, "0003")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO model_versions (application, version, status, path, created_at) VALUES "
                             "('ABP', 'v0001', 'retired', 'p', '2026-11-01'), ('ABP', 'v0002', 'champion', 'p', '2026-11-02'),"
                             " ('ABP', 'v0003', 'challenger', 'p', '2026-11-03')"))
    migrate(url)
    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT application, version FROM champions")).all() == [("ABP", "v0002")]
        assert dict(conn.execute(sa.text("SELECT version, status FROM model_versions")).all()) == {
            "v0001": "promoted", "v0002": "promoted", "v0003": "kept"}
    engine.dispose()
