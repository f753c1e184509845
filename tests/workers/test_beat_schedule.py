"""The beat schedule only names registered tasks, each routed to a queue a worker consumes."""

from __future__ import annotations

from beat_schedule import build_beat_schedule
from tests.conftest import make_settings
from workers.app import QUEUES, TASK_ROUTES, app


def test_every_beat_entry_is_a_registered_task_on_a_known_queue(tmp_path):
    settings = make_settings(tmp_path, apps=["ABP", "CRM"])
    schedule = build_beat_schedule(settings)
    queues = {q.name for q in QUEUES}
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, name
        assert TASK_ROUTES[entry["task"]]["queue"] in queues, name
    assert {"artq-hourly-cycle", "artq-reconcile", "artq-weekly-train-CRM", "artq-daily-drift-ABP"} <= set(schedule)


def test_drift_without_a_model_asks_for_a_first_training(sqlite_settings):
    from artq.pipeline import Runtime
    from artq.pipeline.drift import drift_step

    rt = Runtime(sqlite_settings)
    out = drift_step(rt, "ABP")
    rt.close()
    assert out["drifted"] and "Run `artq train --app ABP` first." in out["reasons"][0]
