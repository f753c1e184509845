"""The Celery side of artq: ``celery -A workers worker|beat|flower``.

``workers.app`` (also ``workers.celery``) is built on first use by :func:`get_app` from artq's
settings (``artq.yml`` / ``ARTQ_CONFIG`` / ``ARTQ_*``), so importing this package needs no
broker and reads nothing; code that has its own settings calls
``workers.factory.create_app(settings)`` instead.

From a shell: ``from workers.tasks import train; train.delay("ABP")``.
"""

from __future__ import annotations

import threading

_app = None
_guard = threading.RLock()


def get_app():
    """The app ``celery -A workers`` runs: made once per process from the environment's settings."""
    global _app
    with _guard:
        if _app is None:
            from artq.config import load_settings
            from workers.factory import create_app

            _app = create_app(load_settings(), set_as_current=True)
    return _app


def __getattr__(name: str):
    if name in ("app", "celery"):  # `celery -A workers ...`: a settings mistake is one line, not a traceback
        from artq.errors import ConfigError

        try:
            return get_app()
        except ConfigError as exc:
            import sys

            print(f"artq: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
