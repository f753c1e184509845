"""The Celery side of artq: ``celery -A workers worker|beat|flower``.

Importing the package builds the app from artq's settings and registers the tasks.
"""

import workers.tasks  # noqa: F401  (registers the tasks on the app)
from workers.app import app

__all__ = ["app"]
