from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from artq.sources.appdynamics import HourlyValue
from artq.storage import open_database
from artq.storage import repository as repo
from artq.storage.models import Forecast, Observation, SourceGap

T0 = datetime(2026, 11, 1, tzinfo=UTC)
H = timedelta(hours=1)


def _values(n_hours: int, scale: float = 1.0) -> list[HourlyValue]:
    out = []
    for i in range(n_hours):
        out.append(HourlyValue("main", "art", T0 + i * H, 100.0 * scale + i))
        out.append(HourlyValue("ABPServer1", "cpm", T0 + i * H, 50.0 * scale))
    return out


def test_store_observations_upserts_instead_of_duplicating(any_db_url):
    db = open_database(any_db_url)
    with db.session() as s:
        repo.store_observations(s, "ABP", _values(24))
    with db.session() as s:
        repo.store_observations(s, "ABP", _values(24, scale=2.0))
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Observation)) == 48
        assert s.scalar(select(Observation.value).where(Observation.metric == "art", Observation.hour == T0)) == 200.0
        assert repo.latest_observed_hour(s, "ABP") == T0 + 23 * H
    db.dispose()


def test_load_frame_is_a_complete_hourly_grid_with_nan_for_missing_hours(any_db_url):
    db = open_database(any_db_url)
    values = [v for v in _values(10) if v.hour != T0 + 4 * H]
    with db.session() as s:
        repo.store_observations(s, "ABP", values)
        frame = repo.load_frame(s, "ABP", T0, T0 + 11 * H)
    db.dispose()
    assert len(frame) == 12
    assert list(frame.columns) == ["art", "cpm_abpserver1"]
    assert str(frame.index.tz) == "UTC"
    assert frame["art"].isna().tolist() == [False] * 4 + [True] + [False] * 5 + [True, True]


def test_gaps_are_counted_and_closed_when_the_value_arrives(any_db_url):
    db = open_database(any_db_url)
    missing = [("ABPServer2", "art", T0 + 3 * H)]
    with db.session() as s:
        repo.record_gaps(s, "ABP", missing)
    with db.session() as s:
        repo.record_gaps(s, "ABP", missing)
    with db.session() as s:
        assert s.scalar(select(SourceGap.attempts)) == 2
        assert repo.open_gap_hours(s, "ABP", since=T0) == [T0 + 3 * H]
        repo.store_observations(s, "ABP", [HourlyValue("ABPServer2", "art", T0 + 3 * H, 7.0)])
    with db.session() as s:
        assert repo.open_gap_hours(s, "ABP", since=T0) == []
    db.dispose()


def test_forecast_rows_are_unique_per_application_origin_horizon(any_db_url):
    db = open_database(any_db_url)
    row = dict(application="ABP", origin=T0, horizon=1, target_hour=T0 + H, value=1.0, lower=0.5, upper=2.0,
               coverage=0.8, model_version="v1", drivers=[["ABPServer3 load", 4.0]])
    with db.session() as s:
        repo.store_forecast(s, row)
    with db.session() as s:
        repo.store_forecast(s, {**row, "value": 3.0})
    with db.session() as s:
        rows = list(s.scalars(select(Forecast)))
    db.dispose()
    assert [(r.value, r.drivers) for r in rows] == [(3.0, [["ABPServer3 load", 4.0]])]


def test_naive_datetimes_are_refused_at_the_storage_boundary(any_db_url):
    db = open_database(any_db_url)
    with pytest.raises(Exception, match="naive datetime"), db.session() as s:
        repo.store_observations(s, "ABP", [HourlyValue("main", "art", datetime(2026, 11, 1), 1.0)])
    db.dispose()


def test_open_database_says_to_run_init_db_when_not_migrated(tmp_path):
    from artq.errors import StorageError

    with pytest.raises(StorageError, match=r"Run `artq init-db` first\."):
        open_database(f"sqlite:///{tmp_path / 'empty.db'}")
