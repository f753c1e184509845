"""Celery beat's schedule: the hourly cycle, the reconciler, the hourly retraining plan.

The schedule names no application: the tasks read the applications table when they run, so an
application added, paused or removed needs no beat restart.
"""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab

from artq.config import Settings

CYCLE_MINUTE = 5  # a few minutes past the hour, so the controller has the last hour complete
PLAN_MINUTE = 35  # well after the cycle, whose forecasts the drift checks read


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
    # drift checks and retrains, staggered by application across the day and the week (artq/pipeline/retraining.py)
    schedule["artq-retraining-plan"] = {
        "task": "artq.model.plan",
        "schedule": crontab(minute=PLAN_MINUTE),
        "options": {"expires": 50 * 60},
    }
    # old history out, weeks ahead in (artq/storage/retention.py): daily, away from the cycle's minutes
    schedule["artq-retention"] = {
        "task": "artq.ops.retention",
        "schedule": crontab(minute=50, hour=3),
        "options": {"expires": 3600},
    }
    return schedule
