"""Fault injection for worker processes under test: ``celery worker --include tests.workers.faults``.

Read once at import (before the pool forks), from the environment the test gives the worker:

- ``ARTQ_TEST_MARK_DIR``: a file ``<step>-<origin>-h<horizon>-<hostname>`` appears there when a
  step starts, so a test knows what runs where before it kills or cuts something;
- ``ARTQ_TEST_PREDICT_DELAY_S`` / ``ARTQ_TEST_REFRESH_DELAY_S``: the step sleeps first;
- ``ARTQ_TEST_FAIL_HORIZON``: that horizon raises an unexpected ``RuntimeError``;
- ``ARTQ_TEST_DROP_REFRESH``: the chord callback is dropped (``Ignore``), as if it was lost;
- ``ARTQ_TEST_TRAIN_SLEEP_S``: training only sleeps (a long retrain that writes no model);
- ``ARTQ_TEST_QUICK_RETRIES``: the retry policies shrink to that many retries 0.1 s apart, so a
  step gives up within seconds.

Only the task module's references are wrapped; the domain functions stay untouched.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import current_task
from celery.exceptions import Ignore

from workers import tasks

MARK_DIR = os.environ.get("ARTQ_TEST_MARK_DIR")
PREDICT_DELAY_S = float(os.environ.get("ARTQ_TEST_PREDICT_DELAY_S") or 0)
REFRESH_DELAY_S = float(os.environ.get("ARTQ_TEST_REFRESH_DELAY_S") or 0)
FAIL_HORIZON = int(os.environ.get("ARTQ_TEST_FAIL_HORIZON") or 0)
DROP_REFRESH = bool(os.environ.get("ARTQ_TEST_DROP_REFRESH"))
TRAIN_SLEEP_S = float(os.environ.get("ARTQ_TEST_TRAIN_SLEEP_S") or 0)
QUICK_RETRIES = os.environ.get("ARTQ_TEST_QUICK_RETRIES")


def _mark(step: str, origin: str, horizon: int | str = "") -> None:
    if not MARK_DIR:
        return
    host = getattr(current_task.request, "hostname", None) or "local"
    name = f"{step}-{origin[:13]}-h{horizon}-{host}-{os.getpid()}-{time.monotonic_ns()}"
    (Path(MARK_DIR) / name).touch()


_predict_step, _refresh_step = tasks.predict_step, tasks.refresh_step


def predict_step(rt, payload, horizon, task_id=None):
    _mark("predict", payload["origin"], horizon)
    if PREDICT_DELAY_S:
        time.sleep(PREDICT_DELAY_S)
    if horizon == FAIL_HORIZON:
        raise RuntimeError(f"injected fault in horizon {horizon}")
    return _predict_step(rt, payload, horizon, task_id=task_id)


def refresh_step(rt, results, applications, origin, task_id=None):
    _mark("refresh", origin.isoformat())
    if DROP_REFRESH:
        raise Ignore()
    if REFRESH_DELAY_S:
        time.sleep(REFRESH_DELAY_S)
    return _refresh_step(rt, results, applications, origin, task_id=task_id)


def train_step(rt, application, tune=None):
    _mark("train", "")
    time.sleep(TRAIN_SLEEP_S)
    return {"application": application, "slept": TRAIN_SLEEP_S}


tasks.predict_step, tasks.refresh_step = predict_step, refresh_step
if QUICK_RETRIES:
    from artq.pipeline import retry

    retry.SOURCE_OUTAGE = retry.STORAGE_OUTAGE = retry.RetryPolicy(int(QUICK_RETRIES), 0.1, 0.1)
if TRAIN_SLEEP_S:
    tasks.train_step = train_step
