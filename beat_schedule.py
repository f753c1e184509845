"""Celery beat's schedule: the hourly cycle for every configured application, the reconciler, retraining."""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from artq.config import Settings

CYCLE_MINUTE = 5  # a few minutes past the hour, so the controller has the last hour complete


def build_beat_schedule(settings: Settings) -> dict:
    ops = settings.operations
    schedule = {
        "artq-hourly-cycle": {
            "task": "artq.cycle.dispatch",
            "schedule": crontab(minute=CYCLE_MINUTE),
            "options": {"expires": 50 * 60},  # a dispatch older than the next one is useless
        },
        # stuck cycles, freshness alerts, catch-up after an outage (artq/pipeline/reconcile.py)
        "artq-reconcile": {
            "task": "artq.ops.reconcile",
            "schedule": timedelta(seconds=ops.reconcile_every_s),
            "options": {"expires": ops.reconcile_every_s},  # never let reconciler runs pile up
        },
    }
    for app in settings.applications:
        schedule[f"artq-weekly-train-{app.name}"] = {
            "task": "artq.model.train",
            "schedule": crontab(minute=30, hour=2, day_of_week="sun"),
            "args": (app.name,),
        }
        # drift and staleness: retrains between the weekly runs when the world moved
        schedule[f"artq-daily-drift-{app.name}"] = {
            "task": "artq.model.drift",
            "schedule": crontab(minute=40, hour=1),
            "args": (app.name,),
        }
    return schedule
