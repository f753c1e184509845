"""Thin task wrappers: JSON in, one domain call, a small dict out. Policy lives in the decorators.

Delivery policy, for every task of the cycle (:class:`CycleTask`): late acknowledgement and
requeue when the worker dies (the steps are idempotent, so running one twice is safe); retries
with exponential backoff and jitter for transient errors only (the source or the database
briefly unreachable); anything else fails at once and the reason lands in ``pipeline_runs``.
The horizon tasks (:class:`HorizonTask`) never fail: a horizon that gives up returns
``ok: False`` with the reason, so the chord's callback still refreshes the other five.
"""

from __future__ import annotations

import inspect
import logging

from celery import Task
from celery.exceptions import Ignore, Reject, Retry

from artq.errors import SourceUnavailable
from artq.pipeline import fetch_step, predict_step, refresh_step, train_step
from artq.pipeline.fleet import fleet_fetch_step, fleet_predict_step, fleet_refresh_step
from artq.pipeline.runtime import StorageUnavailable
from artq.pipeline.steps import horizon_failure, record_failure
from workers.app import TRAIN_TIME_LIMIT_S, app
from workers.runtime import get_runtime

logger = logging.getLogger(__name__)

TRANSIENT = (SourceUnavailable, StorageUnavailable)


class CycleTask(Task):
    """Policy shared by the cycle's tasks; ``on_failure`` records a step that gave up for good."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = TRANSIENT
    retry_backoff = 2  # 2, 4, 8, 16, 30, 30 ... s (full jitter), about 2.5 min in all
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 8
    step = ""

    def _run_args(self, args, kwargs) -> dict:
        try:
            return inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
        except TypeError:
            return {}

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        bound = self._run_args(args, kwargs)
        application, origin = bound.get("application"), bound.get("origin")
        if not (self.step and application and origin):
            return
        try:
            record_failure(get_runtime(), application, origin, self.step, exc)
        except Exception as err:  # noqa: BLE001 - the database may be the thing that is down: the reconciler closes the run later
            logger.warning("could not record the failure of %s for %s %s: %s", self.step, application, origin, err)
        from workers.canvas import release_lock

        release_lock(application, origin, bound.get("lock"))


class HorizonTask(CycleTask):
    """A horizon never sinks the chord: when it gives up it returns the reason instead of raising."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:
            bound = self._run_args(args, kwargs)
            logger.exception("horizon %s gave up", bound.get("horizon"))
            return horizon_failure(bound.get("payload") or {}, bound.get("horizon"), exc, task_id=self.request.id)


@app.task(name="artq.cycle.fetch", base=CycleTask, bind=True, step="fetch", soft_time_limit=540, time_limit=600)
def fetch(self, application: str, origin: str, lock: str | None = None) -> dict:
    return fetch_step(get_runtime(), application, origin, task_id=self.request.id)


@app.task(name="artq.cycle.predict", base=HorizonTask, bind=True, soft_time_limit=120, time_limit=150)
def predict(self, payload: dict, horizon: int) -> dict:
    return {**predict_step(get_runtime(), payload, horizon, task_id=self.request.id), "worker": self.request.hostname}


@app.task(name="artq.cycle.refresh", base=CycleTask, bind=True, step="refresh", soft_time_limit=240, time_limit=300)
def refresh(self, results: list, application: str, origin: str, lock: str | None = None) -> dict:
    out = refresh_step(get_runtime(), results, application, origin, task_id=self.request.id)
    from workers.canvas import release_lock

    release_lock(application, origin, lock)
    return out


# -- the same cycle over a batch of applications (a fleet; see artq/pipeline/fleet.py) ---------------


@app.task(name="artq.fleet.fetch", base=CycleTask, bind=True, soft_time_limit=540, time_limit=600)
def fleet_fetch(self, applications: list, origin: str) -> dict:
    return fleet_fetch_step(get_runtime(), applications, origin, task_id=self.request.id)


@app.task(name="artq.fleet.predict", base=HorizonTask, bind=True, soft_time_limit=240, time_limit=300)
def fleet_predict(self, payload: dict, horizon: int) -> dict:
    return {**fleet_predict_step(get_runtime(), payload, horizon, task_id=self.request.id), "worker": self.request.hostname}


@app.task(name="artq.fleet.refresh", base=CycleTask, bind=True, soft_time_limit=540, time_limit=600)
def fleet_refresh(self, results: list, applications: list, origin: str, locks: dict | None = None) -> dict:
    out = fleet_refresh_step(get_runtime(), results, applications, origin, task_id=self.request.id)
    from workers.canvas import release_locks

    release_locks(origin, locks)
    return out


@app.task(name="artq.cycle.dispatch", soft_time_limit=120, time_limit=180)
def dispatch(origin: str | None = None) -> dict:
    """Beat's hourly entry: start each configured application's cycle (skipping any done or in flight)."""
    from workers.canvas import dispatch_cycles

    return dispatch_cycles(origin, trigger="beat")


@app.task(name="artq.ops.reconcile", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
          retry_backoff=5, max_retries=3, soft_time_limit=240, time_limit=300)
def reconcile() -> dict:
    """Beat's periodic check: finish or re-run stuck cycles, open freshness alerts, catch up."""
    from artq.pipeline.reconcile import reconcile as run_reconcile
    from workers.canvas import restart_cycle

    return run_reconcile(get_runtime(), restart=restart_cycle)


@app.task(name="artq.model.train", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
          retry_backoff=30, max_retries=3, soft_time_limit=TRAIN_TIME_LIMIT_S - 60, time_limit=TRAIN_TIME_LIMIT_S)
def train(application: str, tune: bool | None = None) -> dict:
    return train_step(get_runtime(), application, tune=tune)


@app.task(name="artq.model.drift", acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
          retry_backoff=30, max_retries=3, soft_time_limit=540, time_limit=600)
def drift(application: str) -> dict:
    """Beat's daily check: queue a retrain when errors or inputs drifted, or the model is stale."""
    from artq.pipeline.drift import drift_step

    out = drift_step(get_runtime(), application)
    if out["drifted"]:
        out["train_task"] = train.delay(application).id
    return out
