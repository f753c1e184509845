"""Fault injection through the real simulator: each kind fails or degrades the fetch clearly,
leaves stored data intact, and the next cycle catches up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from artq.errors import InvalidResponse, SourceUnavailable
from artq.pipeline import Runtime
from artq.pipeline.cycle import fetch_step
from artq.pipeline.ingest import backfill
from artq.pipeline.runs import fail_runs, open_runs
from artq.pipeline.runtime import is_transient
from artq.sources.simulator import Faults
from artq.storage import migrate
from artq.storage.models import Observation, PipelineRun, SourceGap
from artq.timeutil import last_complete_hour
from tests.conftest import make_settings

H = timedelta(hours=1)


@pytest.fixture
def behind(tmp_path, simulator):
    """Two days stored, ending 4 hours before the origin: the next fetch has 4 hours to close."""
    settings = make_settings(tmp_path, url=simulator.url, retries=1, timeout_s=1.0)
    migrate(settings.database_url)
    t0 = last_complete_hour()
    rt = Runtime(settings)
    backfill(rt, settings.applications[0], t0 - 48 * H, t0 - 3 * H)
    yield rt, simulator, t0
    rt.close()


def _snapshot(rt):
    with rt.db.session() as s:
        return sorted((o.server, o.metric, o.hour, o.value) for o in s.scalars(select(Observation)))


def _run(rt, t0) -> PipelineRun:
    with rt.db.session() as s:
        return s.scalar(select(PipelineRun).where(PipelineRun.origin == t0))


def _fetch(rt, t0) -> dict:
    """The fetch step of a batch of one; what it ingested, from the run's details."""
    open_runs(rt, ["ABP"], t0, "test")
    payload = fetch_step(rt, ["ABP"], t0)
    return {**_run(rt, t0).details.get("fetch", {}), "payload": payload}


@pytest.mark.parametrize(
    ("faults", "error", "reason"),
    [
        (Faults(fail_next=50, error_status=503), SourceUnavailable, "fetch: "),
        (Faults(fail_next=50, error_status=504), SourceUnavailable, "504"),
        (Faults(latency_s=2.5), SourceUnavailable, "fetch: "),
        (Faults(truncate_next=50), InvalidResponse, "fetch: "),
        (Faults(malformed_next=50), InvalidResponse, "Overall Application Performance|"),
    ],
    ids=["5xx", "gateway-timeout", "slow", "truncated-json", "malformed-json"],
)
def test_failed_fetch_is_recorded_keeps_data_and_next_cycle_catches_up(behind, faults, error, reason):
    rt, sim, t0 = behind
    before = _snapshot(rt)
    open_runs(rt, ["ABP"], t0, "test")
    sim.set_faults(faults)
    if error is SourceUnavailable:  # transient: the whole step raises, for the retry policy
        with pytest.raises(error) as raised:
            fetch_step(rt, ["ABP"], t0)
        assert is_transient(raised.value)
        assert _run(rt, t0).status == "running"  # left open for the retries; closed once they give up
        fail_runs(rt, ["ABP"], t0, f"fetch: {raised.value}", raised.value)
    else:  # not curable by a retry: recorded for this application, the step carries on
        payload = fetch_step(rt, ["ABP"], t0)
        assert payload["applications"] == [] and payload["failed"]["ABP"].startswith("fetch: " + error.__name__)
    run = _run(rt, t0)
    assert run.status == "failed" and run.error.startswith("fetch: ") and reason in run.error
    assert _snapshot(rt) == before  # nothing partial, nothing lost

    sim.set_faults(Faults())
    out = _fetch(rt, t0)
    assert out["stored"] > 0
    with rt.db.session() as s:
        from artq.storage import repository as repo

        assert repo.latest_observed_hour(s, "ABP") == t0
    assert set(before) <= set(_snapshot(rt))


def test_missing_hours_are_reported_then_filled_when_they_arrive_late(behind):
    rt, sim, t0 = behind
    sim.set_faults(Faults(missing_hours=((t0 - 2 * H, t0 - H),)))
    out = _fetch(rt, t0)
    assert out["missing"] >= 48  # every series of the missing hour
    with rt.db.session() as s:
        gaps = {g.hour for g in s.scalars(select(SourceGap))}
    assert t0 - 2 * H in gaps
    assert _run(rt, t0).details["fetch"]["missing"] == out["missing"]

    sim.set_faults(Faults())  # the hour arrives late: the next cycle asks for it again
    _fetch(rt, t0 + H if t0 + H <= last_complete_hour() else t0)
    with rt.db.session() as s:
        assert s.scalar(select(SourceGap).where(SourceGap.hour == t0 - 2 * H)) is None
        assert s.scalar(select(Observation).where(Observation.hour == t0 - 2 * H, Observation.server == "main",
                                                   Observation.metric == "art")) is not None


def test_a_disappearing_metric_leaves_a_gap_not_a_failure(behind):
    rt, sim, t0 = behind
    path = "Overall Application Performance|ABPServer3|Calls per Minute"
    sim.set_faults(Faults(missing_paths=frozenset({path})))
    out = _fetch(rt, t0)
    assert out["missing"] == 4  # the four hours fetched (t0-3h..t0), for that one series
    with rt.db.session() as s:
        gaps = list(s.scalars(select(SourceGap)))
        other = s.scalar(select(Observation).where(Observation.hour == t0, Observation.server == "ABPServer2",
                                                   Observation.metric == "cpm"))
    assert {(g.server, g.metric) for g in gaps} == {("ABPServer3", "cpm")}
    assert other is not None
