"""The hourly cycle as plain functions (``artq.pipeline.cycle``), training, backfill, the reconciler.

Celery tasks (``workers/``) and the in-process runner call exactly these; nothing here imports
Celery.
"""

from artq.pipeline.runtime import Runtime
from artq.pipeline.training import train_step

__all__ = ["Runtime", "train_step"]
