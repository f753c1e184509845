"""The hourly retraining plan: staggered slots, drifted applications first, a budget per hour."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from artq.pipeline import Runtime
from artq.pipeline import applications as apps
from artq.pipeline.retraining import OVERDUE_HOURS, daily_slot, plan, weekly_slot
from artq.storage import repository as repo
from artq.storage.models import Champion, ModelVersion

MONDAY = datetime(2026, 11, 23, tzinfo=UTC)  # hour-of-week 0


@pytest.fixture
def rt(sqlite_settings):
    runtime = Runtime(sqlite_settings)
    yield runtime
    runtime.close()


def test_slots_spread_a_fleet_evenly_over_the_week_and_the_day():
    names = [f"APP{i:05d}" for i in range(10_000)]
    weekly = Counter(weekly_slot(n) for n in names)
    daily = Counter(daily_slot(n) for n in names)
    assert set(weekly) == set(range(168)) and max(weekly.values()) < 2 * 10_000 / 168
    assert set(daily) == set(range(24)) and max(daily.values()) < 1.3 * 10_000 / 24
    assert weekly_slot("ABP") == weekly_slot("ABP")  # stable across processes and restarts


def test_each_application_is_planned_in_its_own_hours(rt):
    with rt.db.session() as s:
        for i in range(40):
            apps.add(s, f"APP{i:02d}", ["web"])
    names = list(rt.applications())
    _retrained(rt, names, MONDAY - timedelta(minutes=1))  # onboarded (first models trained) just before
    trained, checked = Counter(), Counter()
    for h in range(168):
        now = MONDAY + timedelta(hours=h)
        out = plan(rt, now)
        trained.update(out["train"])
        checked.update(out["drift"])
        assert out["deferred"] == []
        _retrained(rt, out["train"], now + timedelta(minutes=5))
    assert trained == Counter({n: 1 for n in names})  # once a week each
    assert checked == Counter({n: 7 for n in names})  # once a day each


def _retrained(rt, names, when):
    """What the queued train tasks do: register a new version."""
    with rt.db.session() as s:
        for n in names:
            s.add(ModelVersion(application=n, version=f"v{when:%d%H%M}", status="kept", path="p", created_at=when))


def test_a_weekly_retrain_the_budget_deferred_is_carried_to_the_next_hours_not_skipped(rt):
    names = [n for n in (f"APP{i:04d}" for i in range(3000)) if weekly_slot(n) == 10][:5]  # one shared hour
    with rt.db.session() as s:
        for n in names:
            apps.add(s, n, ["web"])
    rt.settings.applications = []  # only these five (the configured seed application is not one)
    _retrained(rt, names, MONDAY - timedelta(minutes=1))
    rt.settings.operations.retrain_budget_per_hour = 2
    done = []
    for h in range(10, 14):
        now = MONDAY + timedelta(hours=h)
        out = plan(rt, now)
        assert len(out["train"]) <= 2 and not set(out["train"]) & set(done)
        done += out["train"]
        _retrained(rt, out["train"], now + timedelta(minutes=5))
    assert sorted(done) == sorted(names)  # 2 + 2 + 1: every one retrained within three hours
    assert plan(rt, MONDAY + timedelta(hours=14))["train"] == []


    # next week nobody retrains them (train workers down): due for OVERDUE_HOURS, then dropped
    next_week = MONDAY + timedelta(hours=10 + 168)
    assert len(plan(rt, next_week + timedelta(hours=OVERDUE_HOURS - 1))["train"]) == 2
    assert plan(rt, next_week + timedelta(hours=OVERDUE_HOURS))["train"] == []


def test_a_drifted_application_goes_first_and_the_budget_defers_the_rest(rt):
    with rt.db.session() as s:
        for i in range(5):
            apps.add(s, f"APP{i}", ["web"])
        for name in ("APP1", "APP3"):
            s.add(Champion(application=name, version="v0001", reason="test", promoted_at=MONDAY))
            s.add(ModelVersion(application=name, version="v0001", status="promoted", path="p",
                               created_at=MONDAY - timedelta(days=2)))
            repo.record_alert(s, dict(key=f"drift:{name}:v0001", application=name, kind="drift",
                                      opened_at=MONDAY - timedelta(days=1), message="drifted"))
    rt.settings.operations.retrain_budget_per_hour = 1
    out = plan(rt, MONDAY + timedelta(hours=5))
    assert out["train"] == ["APP1"] and out["deferred"][0] == "APP3"  # oldest alert first, then the budget
    with rt.db.session() as s:  # APP1 retrained after its alert opened: not again until a new drift
        s.add(ModelVersion(application="APP1", version="v0002", status="kept", path="p", created_at=MONDAY))
    rt.settings.operations.retrain_budget_per_hour = 60
    assert "APP1" not in plan(rt, MONDAY + timedelta(hours=6))["train"]
