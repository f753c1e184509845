"""Migration 0006: weekly partitions on MariaDB, the embedded SQLite schema unchanged, upserts intact."""

from __future__ import annotations

import itertools
from datetime import timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select, text

from artq.storage import migrate, open_database
from artq.storage import repository as repo
from artq.storage.models import Base, Forecast, Observation
from artq.storage.retention import FUTURE, PARTITIONED, partitions
from artq.timeutil import last_complete_hour


def _values(hours):
    return [SimpleNamespace(server=s, metric=m, hour=h, value=float(i))
            for i, h in enumerate(hours) for s in ("main", "ABPServer1") for m in ("art", "cpm")]


def _pk(url: str, table: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_pk_constraint(table)["constrained_columns"]
    finally:
        engine.dispose()


@pytest.mark.integration
def test_mariadb_tables_are_weekly_partitions_with_the_time_column_in_the_primary_key(mariadb_url):
    migrate(mariadb_url)
    engine = sa.create_engine(mariadb_url)
    with engine.connect() as conn:
        for table, column in PARTITIONED.items():
            parts = partitions(conn, table)
            assert parts[-1].name == FUTURE and parts[-1].below is None
            bounds = [p.below for p in parts[:-1]]
            assert all(b.weekday() == 0 for b in bounds)  # every week starts on a Monday
            assert all(later - earlier == timedelta(days=7) for earlier, later in itertools.pairwise(bounds))
            assert bounds[-1] >= last_complete_hour().date() + timedelta(days=28)  # weeks ahead exist
            model_pk = [c.name for c in Base.metadata.tables[table].primary_key.columns]
            assert _pk(mariadb_url, table) == model_pk == ["id", column]
    engine.dispose()


def test_sqlite_keeps_its_single_column_primary_key(tmp_path):
    url = f"sqlite:///{tmp_path / 'artq.db'}"
    migrate(url)
    for table in PARTITIONED:
        assert _pk(url, table) == ["id"]  # INTEGER PRIMARY KEY: SQLite autoincrements only that


@pytest.mark.integration
def test_upserts_on_partitioned_tables_replace_rows_in_every_partition(mariadb_url):
    migrate(mariadb_url, "0005")
    t = last_complete_hour()
    db = open_database(mariadb_url)
    with db.session() as s:  # an old hour: the migration must make a place for it
        repo.store_observations(s, "ABP", _values([t - timedelta(days=40)]))
    db.dispose()
    migrate(mariadb_url)
    # old partition, this week, and beyond the weeks created ahead (pmax)
    hours = [t - timedelta(days=40), t, t + timedelta(days=120)]
    db = open_database(mariadb_url)
    for _ in range(2):
        with db.session() as s:
            repo.store_observations(s, "ABP", _values(hours))
            for h in hours:
                repo.store_forecast(s, {"application": "ABP", "origin": h, "horizon": 1, "target_hour": h + timedelta(hours=1),
                                            "value": 5.0, "lower": 4.0, "upper": 6.0, "coverage": 0.9, "model_version": "v1",
                                            "drivers": [["art_lag_1", 1.0]]})
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 3 * 4
        assert s.scalar(select(func.count()).select_from(Forecast)) == 3
        assert repo.latest_observed_hour(s, "ABP") == hours[-1]
        first = partitions(s.connection(), "observations")[0]
        counts = [s.scalar(text(f"SELECT COUNT(*) FROM observations PARTITION ({p})")) for p in (first.name, FUTURE)]
    db.dispose()
    assert first.below - hours[0].date() <= timedelta(days=7)  # the migration started at the oldest week
    assert counts == [4, 4]
