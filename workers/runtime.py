"""The per-process :class:`artq.pipeline.Runtime` that tasks use, reset after a worker forks."""

from __future__ import annotations

from celery.signals import worker_process_init

from artq.config import load_settings
from artq.pipeline import Runtime

_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(load_settings())
    return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Use ``runtime`` in this process (the in-process runner passes the CLI's settings)."""
    global _runtime
    _runtime = runtime


@worker_process_init.connect
def _reset_after_fork(**_kwargs) -> None:
    if _runtime is not None:
        _runtime.after_fork()
