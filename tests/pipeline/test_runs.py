"""Run bookkeeping on SQLite and MariaDB: open, reopen, update, fail — one module for every path."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from artq.pipeline import Runtime
from artq.pipeline.runs import RunStatus, done_applications, fail_runs, in_flight, open_runs, update_runs
from artq.storage import repository as repo
from tests.conftest import make_settings

T0 = datetime(2026, 11, 26, 8, tzinfo=UTC)


@pytest.fixture
def rt(any_db_url, tmp_path):
    settings = make_settings(tmp_path, database_url=any_db_url, apps=["ABP", "ABP2"])
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def run(rt, name="ABP"):
    with rt.db.session() as s:
        return repo.get_run(s, name, T0)


def test_a_reopened_run_counts_attempts_and_forgets_the_last_attempts_facts(rt):
    open_runs(rt, ["ABP"], T0, "beat")
    with rt.db.session() as s:
        update_runs(s, T0, {"ABP": {"task_ids": {"fetch": "a"}, "fetch_s": 1.5, "predict_s": 2.0,
                                    "status": RunStatus.FAILED, "error": "fetch: boom"}})
    with rt.db.session() as s:
        update_runs(s, T0, {"ABP": {"task_ids": {"refresh": "b"}}})
    assert run(rt).task_ids == {"fetch": "a", "refresh": "b"}  # dict fields merge
    open_runs(rt, ["ABP"], T0, "cli")
    again = run(rt)
    assert (again.attempts, again.trigger, again.status) == (2, "cli", "running")
    assert (again.fetch_s, again.predict_s, again.error, again.task_ids) == (None, None, None, {})


def test_fail_runs_closes_only_the_runs_still_running(rt):
    open_runs(rt, ["ABP", "ABP2"], T0, "beat")
    with rt.db.session() as s:
        update_runs(s, T0, {"ABP2": {"status": RunStatus.SUCCEEDED}})
    assert in_flight(rt, ["ABP", "ABP2"], T0, within_s=60) == {"ABP"}
    assert fail_runs(rt, ["ABP", "ABP2"], T0, "refresh: StorageUnavailable: gone") == ["ABP"]
    assert (run(rt).status, run(rt).error) == ("failed", "refresh: StorageUnavailable: gone")
    assert run(rt, "ABP2").status == "succeeded"
    assert done_applications(rt, ["ABP", "ABP2"], T0) == {"ABP2"}
    assert in_flight(rt, ["ABP", "ABP2"], T0, within_s=60) == set()
