"""The beat schedule only names registered tasks, each routed to a queue a worker consumes."""

from __future__ import annotations

from beat_schedule import build_beat_schedule
from tests.conftest import make_settings
from workers.factory import QUEUES, TASK_ROUTES, create_app


def test_every_beat_entry_is_a_registered_task_on_a_known_queue(tmp_path):
    settings = make_settings(tmp_path, apps=["ABP", "CRM"])
    settings.celery.broker_url = "redis://127.0.0.1:6379/15"  # never contacted
    app = create_app(settings)
    schedule = build_beat_schedule(settings)
    assert app.conf.beat_schedule == schedule
    queues = {q.name for q in QUEUES}
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, name
        assert TASK_ROUTES[entry["task"]]["queue"] in queues, name
    assert set(schedule) == {"artq-hourly-cycle", "artq-reconcile", "artq-retraining-plan", "artq-retention"}  # no app named


def test_drift_without_a_model_asks_for_a_first_training(sqlite_settings):
    from artq.pipeline import Runtime
    from artq.pipeline.drift import drift_step

    rt = Runtime(sqlite_settings)
    out = drift_step(rt, "ABP")
    rt.close()
    assert out["drifted"] and "Run `artq train --app ABP` first." in out["reasons"][0]


def test_the_app_factory_needs_a_broker_and_has_no_default(tmp_path):
    import pytest

    from artq.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^no broker configured: set `celery.broker_url` \(or ARTQ_BROKER_URL\)"):
        create_app(make_settings(tmp_path))


def test_two_apps_from_two_settings_do_not_share_configuration(tmp_path):
    a, b = make_settings(tmp_path / "a", apps=["ABP"]), make_settings(tmp_path / "b", apps=["CRM"])
    a.celery.broker_url, b.celery.broker_url = "redis://127.0.0.1:6379/14", "redis://127.0.0.1:6379/15"
    app_a, app_b = create_app(a), create_app(b)
    assert (app_a.conf.broker_url, app_b.conf.broker_url) == (a.celery.broker_url, b.celery.broker_url)
    assert "artq.cycle.fetch" in app_a.tasks and "artq.cycle.fetch" in app_b.tasks
    assert app_a.tasks["artq.cycle.fetch"].app is app_a and app_b.tasks["artq.cycle.fetch"].app is app_b
