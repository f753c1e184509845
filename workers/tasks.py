"""Thin task wrappers: JSON in, the origin parsed once, one domain call, a small dict out.

Delivery policy lives in the base classes, for every task of the cycle: late acknowledgement and
requeue when the worker dies (the steps are idempotent, so running one twice is safe); a
transient failure (the source or the database briefly away) re-runs the task after a backoff as
its kind's policy in :mod:`artq.pipeline.retry` says; anything else fails at once. A cycle task
that gives up for good closes every run of its batch as failed with the reason and releases its
locks (:meth:`CycleTask.on_failure`). The horizon tasks never fail: a horizon that gives up
returns its reason, so the chord's callback still refreshes the other five.

The tasks are shared: they attach to every app :func:`workers.factory.create_app` builds, and
each finds its settings and runtime through ``self.app``. The module-level names (``train``,
``fetch``, ...) are the tasks of the app ``celery -A workers`` runs, so
``train.delay("ABP")`` works from a shell.
"""

from __future__ import annotations

import inspect
import logging

from celery import Task, shared_task
from celery.exceptions import Ignore, Reject, Retry
from celery.local import Proxy

from artq.pipeline.cycle import fetch_step, horizon_failure, predict_step, refresh_step
from artq.pipeline.drift import drift_step
from artq.pipeline.retry import TRANSIENT, policy_for
from artq.pipeline.runs import describe, fail_runs
from artq.pipeline.training import train_step
from artq.timeutil import last_complete_hour, parse_hour
from workers import canvas
from workers.factory import TRAIN_TIME_LIMIT_S, runtime_of

logger = logging.getLogger(__name__)


class PolicyTask(Task):
    """Re-run on transient failures as :func:`artq.pipeline.retry.policy_for` says; fail at once otherwise."""

    acks_late = True
    reject_on_worker_lost = True

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except TRANSIENT as exc:
            policy = policy_for(exc)
            if self.request.called_directly or policy is None or self.request.retries >= policy.retries:
                raise
            countdown = policy.delay(self.request.retries)
            logger.warning("%s: %s; retry %d of %d in %.0f s", self.name, describe(exc), self.request.retries + 1,
                           policy.retries, countdown)
            raise self.retry(exc=exc, countdown=countdown, max_retries=policy.retries) from exc

    def bound_args(self, args, kwargs) -> dict:
        try:
            return inspect.signature(self.run).bind_partial(*args, **kwargs).arguments
        except TypeError:
            return {}


class CycleTask(PolicyTask):
    """A step of the cycle over a batch: when it gives up, every run of the batch is closed as failed."""

    step = ""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        bound = self.bound_args(args, kwargs)
        applications, origin = bound.get("applications"), bound.get("origin")
        if not (self.step and applications and origin):
            return
        t0 = parse_hour(origin, name="origin")
        try:
            fail_runs(runtime_of(self.app), list(applications), t0, f"{self.step}: {describe(exc)}", exc)
        except Exception as err:  # noqa: BLE001 - the database may be what is down: the reconciler closes them later
            logger.warning("could not record the failure of %s for %s: %s", self.step, origin, describe(err))
        canvas.release_locks(self.app, t0, bound.get("locks"))


class HorizonTask(CycleTask):
    """A horizon never sinks the chord: when it gives up it returns the reason instead of raising."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:
            bound = self.bound_args(args, kwargs)
            logger.exception("horizon %s gave up", bound.get("horizon"))
            return horizon_failure(bound.get("payload") or {}, bound.get("horizon"), exc, task_id=self.request.id)


@shared_task(name="artq.cycle.fetch", base=CycleTask, bind=True, step="fetch", soft_time_limit=540, time_limit=600)
def _fetch(self, applications: list, origin: str, locks: dict | None = None) -> dict:
    return fetch_step(runtime_of(self.app), applications, parse_hour(origin, name="origin"), task_id=self.request.id)


@shared_task(name="artq.cycle.predict", base=HorizonTask, bind=True, soft_time_limit=240, time_limit=300)
def _predict(self, payload: dict, horizon: int) -> dict:
    out = predict_step(runtime_of(self.app), payload, horizon, task_id=self.request.id)
    return {**out, "worker": self.request.hostname}


@shared_task(name="artq.cycle.refresh", base=CycleTask, bind=True, step="refresh", soft_time_limit=540, time_limit=600)
def _refresh(self, results: list, applications: list, origin: str, locks: dict | None = None) -> dict:
    t0 = parse_hour(origin, name="origin")
    out = refresh_step(runtime_of(self.app), results, applications, t0, task_id=self.request.id)
    canvas.release_locks(self.app, t0, locks)
    return out


@shared_task(name="artq.cycle.dispatch", bind=True, soft_time_limit=120, time_limit=180)
def _dispatch(self, origin: str | None = None) -> dict:
    """Beat's hourly entry: start the cycle of every configured application (skipping any done or in flight)."""
    t0 = parse_hour(origin, name="origin") if origin else last_complete_hour()
    return canvas.dispatch(self.app, runtime_of(self.app), t0, trigger="beat")


@shared_task(name="artq.ops.reconcile", base=PolicyTask, bind=True, soft_time_limit=240, time_limit=300)
def _reconcile(self) -> dict:
    """Beat's periodic check: finish or re-run stuck cycles, open freshness alerts, catch up."""
    from artq.pipeline.reconcile import reconcile

    rt = runtime_of(self.app)
    return reconcile(rt, restart=canvas.broker_restart(self.app, rt))


@shared_task(name="artq.ops.retention", base=PolicyTask, bind=True, soft_time_limit=240, time_limit=300)
def _retention(self) -> dict:
    """Beat's daily housekeeping: drop history older than ``operations.retention_days``, add weeks ahead."""
    from artq.storage.retention import enforce_retention

    rt = runtime_of(self.app)
    return enforce_retention(rt.db, rt.settings.operations.retention_days)


@shared_task(name="artq.model.train", base=PolicyTask, bind=True, soft_time_limit=TRAIN_TIME_LIMIT_S - 60,
             time_limit=TRAIN_TIME_LIMIT_S)
def _train(self, application: str, tune: bool | None = None) -> dict:
    return train_step(runtime_of(self.app), application, tune=tune)


@shared_task(name="artq.model.drift", base=PolicyTask, bind=True, soft_time_limit=540, time_limit=600)
def _drift(self, application: str) -> dict:
    """An application's daily check: a drift opens an alert, which the next plan turns into a retrain."""
    return drift_step(runtime_of(self.app), application)


@shared_task(name="artq.model.plan", base=PolicyTask, bind=True, soft_time_limit=120, time_limit=180)
def _plan(self) -> dict:
    """Beat's hourly entry for models: this hour's drift checks and retrains, within the budget."""
    from artq.pipeline.retraining import plan

    out = plan(runtime_of(self.app))
    for name in out["drift"]:
        self.app.send_task("artq.model.drift", args=[name])
    for name in out["train"]:
        self.app.send_task("artq.model.train", args=[name])
    return out


def _on_worker_app(name: str) -> Proxy:
    from workers import get_app

    return Proxy(lambda: get_app().tasks[name])


fetch = _on_worker_app("artq.cycle.fetch")
predict = _on_worker_app("artq.cycle.predict")
refresh = _on_worker_app("artq.cycle.refresh")
dispatch = _on_worker_app("artq.cycle.dispatch")
reconcile = _on_worker_app("artq.ops.reconcile")
train = _on_worker_app("artq.model.train")
drift = _on_worker_app("artq.model.drift")
plan = _on_worker_app("artq.model.plan")
retention = _on_worker_app("artq.ops.retention")
