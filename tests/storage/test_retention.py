"""Retention: whole weekly partitions dropped on MariaDB, rows deleted on SQLite, weeks created ahead."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import func, select, text

from artq.config import load_settings
from artq.errors import ConfigError, StorageError
from artq.storage import migrate, open_database
from artq.storage import repository as repo
from artq.storage.models import DashboardForecastActual, Forecast, Observation
from artq.storage.retention import FUTURE, enforce_retention, partitions
from artq.timeutil import as_utc, last_complete_hour

NOW = last_complete_hour()
AGES_DAYS = (500, 420, 380, 10, 0)  # with 400 days kept: the first two go, the others stay


def _fill(db) -> None:
    with db.session() as s:
        for days in AGES_DAYS:
            h = NOW - timedelta(days=days)
            repo.store_observations(s, "ABP", [SimpleNamespace(server="main", metric=m, hour=h, value=1.0)
                                               for m in ("art", "cpm")])
            repo.store_forecast(s, {"application": "ABP", "origin": h, "horizon": 1, "target_hour": h + timedelta(hours=1),
                                        "value": 5.0, "lower": 4.0, "upper": 6.0, "coverage": 0.9, "model_version": "v1", "drivers": None})
            s.add(DashboardForecastActual(application="ABP", origin=h, horizon=1, target_hour=h + timedelta(hours=1),
                                          forecast=5.0, actual=5.5, updated_at=NOW))


def _ages(db) -> dict[str, list[int]]:
    with db.session() as s:
        return {
            "observations": sorted({(NOW - as_utc(h)).days for h in s.scalars(select(Observation.hour))}, reverse=True),
            "forecasts": sorted({(NOW - as_utc(h)).days for h in s.scalars(select(Forecast.origin))}, reverse=True),
            "dashboard_forecast_actual": sorted({(NOW - as_utc(h)).days
                                                 for h in s.scalars(select(DashboardForecastActual.origin))}, reverse=True),
        }


@pytest.fixture
def filled_mariadb(mariadb_url):
    """Rows 500 days back to now written before migration 0006, which partitions them from the oldest week."""
    migrate(mariadb_url, "0005")
    db = open_database(mariadb_url)
    _fill(db)
    db.dispose()
    migrate(mariadb_url)
    db = open_database(mariadb_url)
    yield db
    db.dispose()


@pytest.mark.integration
def test_mariadb_drops_whole_old_partitions_and_keeps_every_row_inside_the_retention(filled_mariadb):
    db = filled_mariadb
    with db.engine.connect() as conn:
        before = {t: partitions(conn, t) for t in ("observations", "forecasts", "dashboard_forecast_actual")}
    report = enforce_retention(db, 400, now=NOW)
    assert report["dialect"] == "mariadb" and report["retention_days"] == 400
    cutoff = (NOW - timedelta(days=400)).date()
    for table, parts in before.items():
        expected = [p.name for p in parts[:-2] if p.below <= cutoff]
        assert report["tables"][table]["dropped"] == expected
        assert len(expected) >= 13  # the weeks of days 500..407 back, dropped whole
        assert report["tables"][table]["deleted_rows"] == 0
        assert report["tables"][table]["partitions"] == len(parts) - len(expected)
    assert _ages(db) == {t: [380, 10, 0] for t in before}

    again = enforce_retention(db, 400, now=NOW)  # idempotent: nothing left to drop or create
    assert all(r["dropped"] == [] and r["created"] == [] for r in again["tables"].values())
    assert _ages(db) == {t: [380, 10, 0] for t in before}


@pytest.mark.integration
def test_mariadb_creates_the_weeks_ahead_so_inserts_never_land_in_maxvalue(filled_mariadb):
    db = filled_mariadb
    later = NOW + timedelta(days=45)  # the migration made weeks up to ~28 days ahead of today
    report = enforce_retention(db, 0, now=later)  # 0: keep everything, but still make room ahead
    assert report["cutoff"] is None
    for result in report["tables"].values():
        assert result["dropped"] == [] and len(result["created"]) >= 6
    with db.engine.connect() as conn:
        parts = partitions(conn, "observations")
    assert parts[-1].name == FUTURE
    assert parts[-2].below >= (later + timedelta(days=28)).date()
    assert _ages(db)["observations"] == list(AGES_DAYS)
    hour = later + timedelta(days=20)
    with db.session() as s:
        repo.store_observations(s, "ABP", [SimpleNamespace(server="main", metric="art", hour=hour, value=2.0)])
        assert s.scalar(text(f"SELECT COUNT(*) FROM observations PARTITION ({FUTURE})")) == 0
        assert repo.latest_observed_hour(s, "ABP") == hour
    assert all(r["created"] == [] for r in enforce_retention(db, 0, now=later)["tables"].values())


@pytest.mark.integration
def test_mariadb_without_the_partition_migration_is_a_one_line_error(mariadb_url):
    migrate(mariadb_url, "0005")
    db = open_database(mariadb_url)
    with pytest.raises(StorageError, match="not partitioned.*artq init-db"):
        enforce_retention(db, 400)
    db.dispose()


def test_sqlite_deletes_rows_older_than_the_retention(tmp_path):
    url = f"sqlite:///{tmp_path / 'artq.db'}"
    migrate(url)
    db = open_database(url)
    _fill(db)
    report = enforce_retention(db.engine, 400, now=NOW)
    assert report["dialect"] == "sqlite"
    assert {t: r["deleted_rows"] for t, r in report["tables"].items()} == {
        "observations": 4, "forecasts": 2, "dashboard_forecast_actual": 2}
    assert _ages(db) == {t: [380, 10, 0] for t in report["tables"]}
    again = enforce_retention(db, 400, now=NOW)
    assert all(r["deleted_rows"] == 0 for r in again["tables"].values())
    assert all(r["deleted_rows"] == 0 for r in enforce_retention(db, 0, now=NOW)["tables"].values())
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 6
    db.dispose()


@pytest.mark.parametrize("bad", [-1, 1.5, True, "400"])
def test_enforce_retention_refuses_a_retention_that_is_not_whole_days(tmp_path, bad):
    url = f"sqlite:///{tmp_path / 'artq.db'}"
    migrate(url)
    with pytest.raises(StorageError, match="retention_days must be a whole number"):
        enforce_retention(open_database(url), bad)


def test_retention_setting_defaults_to_400_days_and_is_validated(tmp_path):
    assert load_settings(env={"ARTQ_HOME": str(tmp_path)}).operations.retention_days == 400
    config = tmp_path / "artq.yml"
    for value, message in ((0, None), (120, None), (10, "must be 0 .keep forever. or a whole number of days in 30..36600"),
                           (-5, "must be 0"), ("a year", "retention_days` must be a whole number"), (60, "must exceed `forecast.training_days` .90.")):
        config.write_text(f"operations:\n  retention_days: {value!r}\n" if isinstance(value, str)
                          else f"operations:\n  retention_days: {value}\n")
        if message is None:
            assert load_settings(str(config), env={"ARTQ_HOME": str(tmp_path)}).operations.retention_days == value
        else:
            with pytest.raises(ConfigError, match=message):
                load_settings(str(config), env={"ARTQ_HOME": str(tmp_path)})
