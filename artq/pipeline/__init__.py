"""The hourly cycle as plain functions: fetch, predict one horizon, refresh; training; backfill.

Celery tasks (``workers/``) and the in-process runner call exactly these; nothing here imports
Celery.
"""

from artq.pipeline.runtime import Runtime
from artq.pipeline.steps import fetch_step, predict_step, refresh_step
from artq.pipeline.training import train_step

__all__ = ["Runtime", "fetch_step", "predict_step", "refresh_step", "train_step"]
