"""Celery beat's schedule: the hourly cycle for every configured application, and retraining."""

from __future__ import annotations

from celery.schedules import crontab

from artq.config import Settings

CYCLE_MINUTE = 5  # a few minutes past the hour, so the controller has the last hour complete


def build_beat_schedule(settings: Settings) -> dict:
    schedule = {
        "artq-hourly-cycle": {
            "task": "artq.cycle.dispatch",
            "schedule": crontab(minute=CYCLE_MINUTE),
            "options": {"expires": 50 * 60},  # a dispatch older than the next one is useless
        },
    }
    for app in settings.applications:
        schedule[f"artq-weekly-train-{app.name}"] = {
            "task": "artq.model.train",
            "schedule": crontab(minute=30, hour=2, day_of_week="sun"),
            "args": (app.name,),
        }
    return schedule
