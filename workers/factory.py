"""The Celery app factory: :func:`create_app` builds an app from artq's :class:`Settings`.

Configuration only: the tasks live in ``workers.tasks`` (registered on every app this builds),
the canvas in ``workers.canvas``. Each app carries its settings and, in worker processes, one
:class:`~artq.pipeline.Runtime` (:func:`runtime_of`); nothing is global but the app that
``celery -A workers`` loads (``workers.get_app``).
"""

from __future__ import annotations

import weakref

from celery import Celery
from celery.signals import worker_process_init
from kombu import Exchange, Queue

from artq.config import Settings
from artq.errors import ConfigError
from artq.pipeline import Runtime

EXCHANGE = Exchange("artq", type="direct")
QUEUES = (
    Queue("fetch", EXCHANGE, routing_key="fetch"),      # fetch workers: I/O against the controller
    Queue("predict", EXCHANGE, routing_key="predict"),  # predict workers: CPU, one per core; scale out
    Queue("refresh", EXCHANGE, routing_key="refresh"),  # refresh workers: dashboard database writes
    Queue("train", EXCHANGE, routing_key="train"),      # train workers: long CPU, never delays forecasts
)

# Every route in one place: task name -> queue (the queue's comment above names its worker).
TASK_ROUTES = {
    "artq.cycle.fetch": {"queue": "fetch", "routing_key": "fetch"},
    "artq.cycle.dispatch": {"queue": "fetch", "routing_key": "fetch"},
    "artq.cycle.predict": {"queue": "predict", "routing_key": "predict"},
    "artq.cycle.refresh": {"queue": "refresh", "routing_key": "refresh"},
    "artq.ops.reconcile": {"queue": "refresh", "routing_key": "refresh"},
    "artq.ops.retention": {"queue": "refresh", "routing_key": "refresh"},
    "artq.model.train": {"queue": "train", "routing_key": "train"},
    "artq.model.drift": {"queue": "train", "routing_key": "train"},
    "artq.model.plan": {"queue": "refresh", "routing_key": "refresh"},
}

TRAIN_TIME_LIMIT_S = 3600
DEFAULT_TIME_LIMIT_S = 600  # a safety net; every task also sets its own limits


def transport_options(settings: Settings) -> dict:
    """Redis transport: how fast a dead worker's messages come back, and why no live one's do.

    A worker renews the lease of the messages it holds every ``lease_renew_s`` (workers.lease),
    so the visibility timeout bounds the time since a worker was last seen alive, not the
    length of a task: a 1-hour training is never delivered twice, and a killed worker's task is
    back in its queue ``visibility_timeout_s`` + at most 2 s after its last renewal. With renewal
    off (``lease_renew_s: 0``) the timeout must exceed the longest task, training included.
    """
    ops = settings.operations
    timeout = ops.visibility_timeout_s if ops.lease_renew_s else max(ops.visibility_timeout_s, TRAIN_TIME_LIMIT_S + 300)
    return {
        "visibility_timeout": timeout,
        # sweep for expired leases every 2 s (kombu's default is ~100 s: interval 10 x throttle 10)
        "unacked_restore_interval": 2,
        "unacked_restore_throttle": 1,
    }


def create_app(settings: Settings, *, set_as_current: bool = False) -> Celery:
    """A Celery app for ``settings``: broker and result backend, queues and routes, JSON only,
    delivery policy, lease renewal, the beat schedule, and every artq task registered.

    Raises :class:`ConfigError` when no broker is configured: there is no default broker, and
    without one the cycle runs in-process instead (``artq run-cycle``, ``artq serve``).
    """
    from beat_schedule import build_beat_schedule
    from workers.lease import LeaseRenewal

    broker = settings.celery.broker_url
    if not broker:
        raise ConfigError(
            "no broker configured: set `celery.broker_url` (or ARTQ_BROKER_URL), e.g. redis://127.0.0.1:6379/0; "
            "without a broker, cycles run in-process (`artq run-cycle`, `artq serve`)."
        )
    ops = settings.operations
    app = Celery("artq", set_as_current=set_as_current)
    app.conf.update(
        broker_url=broker,
        result_backend=settings.celery.result_backend or broker,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],  # pickle off: a broker message can never run code
        result_accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        task_queues=QUEUES,  # a worker without -Q consumes all of these
        task_default_queue="predict",
        task_default_exchange="artq",
        task_default_routing_key="predict",
        task_routes=TASK_ROUTES,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=24 * 3600,
        result_extended=True,
        task_soft_time_limit=DEFAULT_TIME_LIMIT_S - 30,
        task_time_limit=DEFAULT_TIME_LIMIT_S,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,  # a Redis restart never ends a worker
        worker_cancel_long_running_tasks_on_connection_loss=False,  # tasks are idempotent; let them finish
        broker_transport_options=transport_options(settings),
        artq_lease_renew_s=ops.lease_renew_s,  # read by workers.lease.LeaseRenewal
        result_backend_transport_options={"retry_policy": {"timeout": 30.0}},  # ride out a Redis restart
        worker_send_task_events=True,
        task_send_sent_event=True,
        beat_schedule=build_beat_schedule(settings),
    )
    app.steps["consumer"].add(LeaseRenewal)
    app.artq_settings = settings
    app.artq_runtime = None
    _APPS.add(app)
    import workers.tasks  # noqa: F401 - shared tasks attach to every app when it finalizes

    return app


def runtime_of(app: Celery) -> Runtime:
    """The app's Runtime (settings, database, source, loaded models), made on first use in this process."""
    if app.artq_runtime is None:
        app.artq_runtime = Runtime(app.artq_settings)
    return app.artq_runtime


_APPS: weakref.WeakSet = weakref.WeakSet()


@worker_process_init.connect
def _reset_after_fork(**_kwargs) -> None:
    """Prefork children must not share the parent's database connections or HTTP sessions."""
    for app in list(_APPS):
        if getattr(app, "artq_runtime", None) is not None:
            app.artq_runtime.after_fork()
