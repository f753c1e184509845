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

TASK_ROUTES = {
    "artq.cycle.fetch": {"queue": "fetch", "routing_key": "fetch"},
    "artq.cycle.dispatch": {"queue": "fetch", "routing_key": "fetch"},
    "artq.cycle.predict": {"queue": "predict", "routing_key": "predict"},
    "artq.cycle.refresh": {"queue": "refresh", "routing_key": "refresh"},
    "artq.model.train": {"queue": "train", "routing_key": "train"},
}

TRAIN_TIME_LIMIT_S = 3600


def configure(app: Celery, settings: Settings) -> None:
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
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        result_expires=24 * 3600,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            # above the longest task (training), or a slow task would be delivered twice
            "visibility_timeout": TRAIN_TIME_LIMIT_S * 2,
            # a killed worker's unacked messages come back within seconds, not ~100 s
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"retry_policy": {"timeout": 5.0}},
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
    app = Celery("artq")
    configure(app, settings or load_settings())
    from beat_schedule import build_beat_schedule

    app.conf.beat_schedule = build_beat_schedule(settings or load_settings())
    return app


app = create_app()
