"""One retry policy per kind of failure, for every way the cycle runs.

The cycle's steps are idempotent, so a transient failure (the controller or the database briefly
away) is retried by re-running the whole step after a backoff. Celery tasks
(``workers/tasks.py``) and the in-process runner (``artq.pipeline.cycle``) both read the policy
here. Below this layer, the AppDynamics client retries a single HTTP request a few times
(``source.retries``) to ride out a dropped connection; nothing else retries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from artq.errors import SourceUnavailable
from artq.pipeline.runtime import StorageUnavailable


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # re-runs of the step after the first attempt
    backoff_s: float  # first delay; doubles per retry
    backoff_max_s: float

    def delay(self, retry: int, jitter: bool = True) -> float:
        """Seconds before re-run number ``retry + 1`` (full jitter: uniform in [0, cap])."""
        cap = min(self.backoff_max_s, self.backoff_s * 2**retry)
        return random.uniform(0, cap) if jitter else cap


SOURCE_OUTAGE = RetryPolicy(retries=6, backoff_s=2.0, backoff_max_s=30.0)  # about 2 minutes in all
STORAGE_OUTAGE = RetryPolicy(retries=8, backoff_s=1.0, backoff_max_s=15.0)  # restarts, failovers, deadlocks

TRANSIENT = (SourceUnavailable, StorageUnavailable)


def policy_for(exc: BaseException) -> RetryPolicy | None:
    """The policy of ``exc``'s kind, or None: retrying cannot cure it."""
    if isinstance(exc, SourceUnavailable):
        return SOURCE_OUTAGE
    if isinstance(exc, StorageUnavailable):
        return STORAGE_OUTAGE
    return None
