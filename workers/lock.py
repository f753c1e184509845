"""A short lock per (application, origin): a second trigger of an in-flight cycle is turned away.

The lock lives in the broker's Redis (``SET key token NX PX ttl``); its token travels with the
canvas and the cycle's last step releases it (compare-and-delete, so a late step of an older
attempt cannot release a newer one). It is a guard against wasted work and double alerts, not
the guarantee of single results: the unique keys in the database are that guarantee, and they
hold even if Redis loses the lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime
from typing import ClassVar

KEY_PREFIX = "artq:cycle-lock"

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lock_key(application: str, origin: str | datetime) -> str:
    iso = origin.isoformat() if isinstance(origin, datetime) else origin
    return f"{KEY_PREFIX}:{application}:{iso}"


class CycleLock:
    """Redis-backed when the broker is Redis; a process-local table otherwise (in-process runs)."""

    _local: ClassVar[dict[str, tuple[str, float]]] = {}
    _local_guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, broker_url: str | None, ttl_s: float):
        self.ttl_ms = int(ttl_s * 1000)
        self.url = broker_url if broker_url and broker_url.startswith(("redis://", "rediss://", "unix://")) else None

    def _client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def acquire(self, application: str, origin: str | datetime, force: bool = False) -> str | None:
        """A token if this caller now holds the lock, None if someone else does (``force``: take it anyway)."""
        key, token = lock_key(application, origin), uuid.uuid4().hex
        if self.url:
            client = self._client()
            try:
                return token if client.set(key, token, px=self.ttl_ms, nx=not force) else None
            finally:
                client.close()
        with self._local_guard:
            held = self._local.get(key)
            if held and held[1] > time.monotonic() and not force:
                return None
            self._local[key] = (token, time.monotonic() + self.ttl_ms / 1000)
            return token

    def acquire_many(self, applications: list[str], origin: str | datetime, force: bool = False) -> dict[str, str | None]:
        """One round trip for a fleet: ``{application: token, or None where the lock is held}``."""
        if not self.url:
            return {a: self.acquire(a, origin, force=force) for a in applications}
        tokens = {a: uuid.uuid4().hex for a in applications}
        client = self._client()
        try:
            pipe = client.pipeline(transaction=False)
            for a, token in tokens.items():
                pipe.set(lock_key(a, origin), token, px=self.ttl_ms, nx=not force)
            got = pipe.execute()
        finally:
            client.close()
        return {a: (tokens[a] if ok else None) for a, ok in zip(applications, got, strict=True)}

    def release_many(self, origin: str | datetime, tokens: dict[str, str]) -> None:
        if not self.url:
            for a, token in tokens.items():
                self.release(a, origin, token)
            return
        client = self._client()
        try:
            pipe = client.pipeline(transaction=False)
            for a, token in tokens.items():
                pipe.eval(_RELEASE_LUA, 1, lock_key(a, origin), token)
            pipe.execute()
        finally:
            client.close()

    def release(self, application: str, origin: str | datetime, token: str | None) -> bool:
        if not token:
            return False
        key = lock_key(application, origin)
        if self.url:
            client = self._client()
            try:
                return bool(client.eval(_RELEASE_LUA, 1, key, token))
            finally:
                client.close()
        with self._local_guard:
            if self._local.get(key, ("",))[0] == token:
                del self._local[key]
                return True
        return False
