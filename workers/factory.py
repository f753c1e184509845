"""The Celery app: configuration only. Tasks live in ``workers.tasks``; the canvas in ``workers.canvas``."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from artq.config import Settings, load_settings

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DEFAULT_BACKEND = "redis://127.0.0.1:6379/1"

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
    "artq.fleet.fetch": {"queue": "fetch", "routing_key": "fetch"},
    "artq.cycle.predict": {"queue": "predict", "routing_key": "predict"},
    "artq.fleet.predict": {"queue": "predict", "routing_key": "predict"},
    "artq.cycle.refresh": {"queue": "refresh", "routing_key": "refresh"},
    "artq.fleet.refresh": {"queue": "refresh", "routing_key": "refresh"},
    "artq.ops.reconcile": {"queue": "refresh", "routing_key": "refresh"},
    "artq.model.train": {"queue": "train", "routing_key": "train"},
    "artq.model.drift": {"queue": "train", "routing_key": "train"},
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


def configure(app: Celery, settings: Settings) -> None:
    ops = settings.operations
    app.conf.update(
        broker_url=settings.celery.broker_url or DEFAULT_BROKER,
        result_backend=settings.celery.result_backend or DEFAULT_BACKEND,
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
        task_always_eager=False,  # make_eager() turns the in-process mode on
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
    )


def make_eager(app: Celery) -> None:
    """Run every task inline in this process: the embedded default, no broker needed."""
    app.conf.update(
        broker_url="memory://",
        result_backend="cache+memory://",
        task_always_eager=True,
        task_eager_propagates=True,
    )


def create_app(settings: Settings | None = None) -> Celery:
    from workers.lease import LeaseRenewal

    settings = settings or load_settings()
    app = Celery("artq")
    configure(app, settings)
    app.steps["consumer"].add(LeaseRenewal)
    from beat_schedule import build_beat_schedule

    app.conf.beat_schedule = build_beat_schedule(settings)
    return app


app = create_app()
