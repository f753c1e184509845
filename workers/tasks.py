"""Thin task wrappers: JSON in, one domain call, a small dict out. Policy lives in the decorators."""

from __future__ import annotations

from artq.errors import SourceUnavailable
from artq.pipeline import fetch_step, predict_step, refresh_step, train_step
from workers.app import TRAIN_TIME_LIMIT_S, app
from workers.runtime import get_runtime


@app.task(
    name="artq.cycle.fetch",
    bind=True,
    autoretry_for=(SourceUnavailable,),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=4,
    soft_time_limit=540,
    time_limit=600,
)
def fetch(self, application: str, origin: str) -> dict:
    return fetch_step(get_runtime(), application, origin, task_id=self.request.id)


@app.task(name="artq.cycle.predict", bind=True, soft_time_limit=240, time_limit=300)
def predict(self, payload: dict, horizon: int) -> dict:
    return {**predict_step(get_runtime(), payload, horizon), "worker": self.request.hostname}


@app.task(name="artq.cycle.refresh", soft_time_limit=240, time_limit=300)
def refresh(results: list, application: str, origin: str) -> dict:
    return refresh_step(get_runtime(), results, application, origin)


@app.task(name="artq.cycle.dispatch", soft_time_limit=120, time_limit=180)
def dispatch(origin: str | None = None) -> dict:
    """Beat's hourly entry: start one cycle per configured application."""
    from workers.canvas import start_cycle

    rt = get_runtime()
    started = {a.name: start_cycle(a.name, origin, trigger="beat").id for a in rt.settings.applications}
    return {"started": len(started)}


@app.task(name="artq.model.train", soft_time_limit=TRAIN_TIME_LIMIT_S - 60, time_limit=TRAIN_TIME_LIMIT_S)
def train(application: str, tune: bool | None = None) -> dict:
    return train_step(get_runtime(), application, tune=tune)
