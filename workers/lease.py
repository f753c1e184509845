"""Lease renewal: a live worker keeps the broker from handing its messages to another worker.

kombu's Redis transport emulates acknowledgements: a delivered message waits in the
``unacked`` hash, indexed by delivery time in the ``unacked_index`` sorted set, and any
worker's periodic sweep puts it back in its queue once that time is older than the visibility
timeout. With the timeout above the longest task (an hour of training), a killed worker's task
would come back an hour later; with a short one, a long task still running would be delivered
twice. This consumer step resolves the two: every ``artq_lease_renew_s`` seconds it moves the
index score of each message this worker still holds (running, reserved, or waiting for a retry's
countdown) to *now*. A live worker's messages are therefore never older than a few seconds,
however long their task runs, while a dead worker's stop being renewed and are restored one
visibility timeout after its last renewal.
"""

from __future__ import annotations

import logging
import time

from celery import bootsteps

logger = logging.getLogger(__name__)


class LeaseRenewal(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.tref = None

    def start(self, c) -> None:
        interval = float(c.app.conf.get("artq_lease_renew_s") or 0)
        if interval > 0 and c.timer is not None:
            self.tref = c.timer.call_repeatedly(interval, self.renew, (c,), priority=10)

    def stop(self, c) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop

    def renew(self, c) -> int:
        """Refresh the lease of every message this consumer holds unacknowledged; returns how many."""
        consumer = getattr(c, "task_consumer", None)
        channel = getattr(consumer, "channel", None)
        qos = getattr(channel, "qos", None)
        if qos is None or not hasattr(qos, "unacked_index_key"):  # not the Redis transport
            return 0
        tags = list(getattr(qos, "_delivered", {}))  # kombu's map of unacked deliveries of this channel
        if not tags:
            return 0
        now = time.time()
        try:
            with channel.conn_or_acquire() as client:
                # XX: only touch entries still present; an ack that raced us stays removed
                client.zadd(qos.unacked_index_key, dict.fromkeys(tags, now), xx=True)
        except Exception as exc:  # noqa: BLE001 - broker briefly away: the next tick tries again
            logger.warning("lease renewal skipped: %s", exc)
            return 0
        return len(tags)
