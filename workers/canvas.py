"""The hourly cycle as a Celery canvas: chain(fetch, chord(group(predict(h) for h in 1..6), refresh))."""

from __future__ import annotations

from datetime import datetime

from celery import chain, chord, group
from celery.result import AsyncResult

from artq.pipeline.steps import HORIZONS, begin_run
from artq.timeutil import last_complete_hour
from workers.runtime import get_runtime
from workers.tasks import fetch, predict, refresh


def cycle_signature(application: str, origin: str):
    return chain(
        fetch.si(application, origin),
        chord(group(predict.s(horizon=h) for h in HORIZONS), refresh.s(application, origin)),
    )


def start_cycle(application: str, origin: str | datetime | None = None, trigger: str = "cli") -> AsyncResult:
    """Record the run, then send the canvas; returns the result of the chord callback."""
    t0 = origin if isinstance(origin, datetime) else None
    iso = (t0 or (datetime.fromisoformat(origin) if origin else last_complete_hour())).isoformat()
    begin_run(get_runtime(), application, iso, trigger)
    return cycle_signature(application, iso).apply_async()


def run_cycle(runtime, application: str, origin: datetime | None = None, *, use_broker: bool = False,
              trigger: str = "cli", timeout_s: float = 600) -> dict:
    """Run one cycle and wait for its refresh: in this process (eager canvas) or through the broker."""
    from workers.app import app, configure, make_eager
    from workers.runtime import set_runtime

    set_runtime(runtime)
    if use_broker:
        configure(app, runtime.settings)  # the caller's --config, not only ARTQ_CONFIG
    else:
        make_eager(app)
    runtime.settings.application(application)
    result = start_cycle(application, origin or last_complete_hour(), trigger=trigger)
    return result.get(timeout=timeout_s, propagate=True, disable_sync_subtasks=False)
