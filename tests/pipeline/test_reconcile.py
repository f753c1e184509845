"""The reconciler on a SQLite file: stuck runs, freshness alerts, catch-up (a clock passed in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from artq.pipeline import Runtime
from artq.pipeline.reconcile import (
    check_freshness,
    cycles_due,
    freshness_key,
    reconcile,
)
from artq.pipeline.runs import open_runs
from artq.storage import repository as repo
from artq.storage.models import Alert, PipelineRun
from artq.timeutil import HOUR

NOW = datetime(2026, 11, 26, 9, 25, tzinfo=UTC)  # 25 minutes past: past the default freshness minute (20)
LATEST = datetime(2026, 11, 26, 8, tzinfo=UTC)


@pytest.fixture
def rt(sqlite_settings):
    runtime = Runtime(sqlite_settings)
    yield runtime
    runtime.close()


def add_run(rt, origin, status="running", started=None, attempts=1, horizons=()):
    open_runs(rt, ["ABP"], origin, "test")
    with rt.db.session() as s:
        run = repo.get_run(s, "ABP", origin)
        run.status, run.attempts = status, attempts
        run.started_at = started or NOW - timedelta(hours=1)
        for h in horizons:
            repo.store_forecast(s, {"application": "ABP", "origin": origin, "horizon": h, "target_hour": origin + h * HOUR,
                                    "value": 100.0 + h, "lower": 90.0, "upper": 120.0, "coverage": 0.8,
                                    "model_version": "v0001", "drivers": []})


def get_run(rt, origin) -> PipelineRun:
    with rt.db.session() as s:
        return repo.get_run(s, "ABP", origin)


def alerts(rt) -> list[Alert]:
    with rt.db.session() as s:
        return list(s.scalars(select(Alert).order_by(Alert.id)))


def test_a_stuck_run_with_six_forecasts_is_completed_in_place(rt):
    add_run(rt, LATEST, horizons=range(1, 7))
    restarts = []
    report = reconcile(rt, restart=lambda *a: restarts.append(a), now=NOW)
    run = get_run(rt, LATEST)
    assert report["completed"] == ["ABP@2026-11-26T08:00Z"] and restarts == []
    assert (run.status, run.error) == ("succeeded", None)
    assert run.details["reconciled"]["reason"] == "completed by the reconciler"


def test_a_stuck_run_missing_forecasts_is_rerun_then_closed_after_max_attempts(rt):
    add_run(rt, LATEST, horizons=(1, 2))
    restarts = []
    report = reconcile(rt, restart=lambda *a: restarts.append(a), now=NOW)
    assert restarts == [(["ABP"], LATEST, "reconciler")] and report["restarted"] == ["ABP@2026-11-26T08:00Z"]
    assert get_run(rt, LATEST).status == "running"

    with rt.db.session() as s:
        repo.get_run(s, "ABP", LATEST).attempts = rt.settings.operations.max_attempts
    report = reconcile(rt, restart=lambda *a: restarts.append(a), now=NOW)
    run = get_run(rt, LATEST)
    assert report["gave_up"] == ["ABP@2026-11-26T08:00Z"] and len(restarts) == 1
    assert run.status == "partial"
    assert run.error.startswith("h3: no forecast after 3 attempts; the reconciler closed the run")


def test_a_run_younger_than_the_deadline_is_left_alone(rt):
    add_run(rt, LATEST, started=NOW - timedelta(seconds=60), horizons=(1,))
    report = reconcile(rt, restart=lambda *a: pytest.fail("restarted a live run"), now=NOW)
    assert report["restarted"] == report["completed"] == report["gave_up"] == []
    assert get_run(rt, LATEST).status == "running"


def test_freshness_alert_opens_once_past_the_minute_and_resolves_when_a_cycle_completes(rt):
    assert check_freshness(rt, NOW.replace(minute=10)) == {"opened": [], "resolved": []}  # too early to tell
    assert check_freshness(rt, NOW)["opened"] == ["ABP"]
    assert check_freshness(rt, NOW + timedelta(minutes=5))["opened"] == []  # deduplicated by its key
    [alert] = alerts(rt)
    assert (alert.key, alert.kind, alert.status) == (freshness_key("ABP", LATEST), "freshness", "open")
    assert "no completed forecast cycle for 2026-11-26 08:00 UTC by minute 20" in alert.message

    add_run(rt, LATEST, status="succeeded")
    assert check_freshness(rt, NOW + timedelta(minutes=6))["resolved"] == ["ABP"]
    assert [a.status for a in alerts(rt)] == ["resolved"]


def test_freshness_minute_is_configurable(rt):
    rt.settings.operations.freshness_minute = 40
    assert check_freshness(rt, NOW)["opened"] == []


def test_the_latest_origin_is_started_when_its_trigger_never_came(rt):
    add_run(rt, LATEST - HOUR, status="succeeded")
    assert cycles_due(rt, NOW) == [("ABP", LATEST)]
    assert cycles_due(rt, NOW.replace(minute=10)) == []  # before the minute: the previous hour is checked


def test_catch_up_also_forecasts_the_origins_missed_while_beat_was_down(rt):
    add_run(rt, LATEST - 5 * HOUR, status="succeeded")
    rt.settings.operations.catch_up_missed = True
    due = cycles_due(rt, NOW)
    assert due == [("ABP", LATEST)] + [("ABP", LATEST - k * HOUR) for k in (4, 3, 2, 1)]
    started = []
    report = reconcile(rt, restart=lambda *a: started.append(a), now=NOW)
    assert [o for _, o, _ in started] == sorted(o for _, o in due)  # one batch per origin, oldest first
    assert {t for *_, t in started} == {"catch-up"} and all(apps == ["ABP"] for apps, *_ in started)
    assert len(report["started"]) == 5
