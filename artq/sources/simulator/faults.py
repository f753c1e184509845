"""Fault injection: the ways a real controller misbehaves, switchable at run time.

All faults are off by default. Probabilistic faults draw from ``random.Random(seed)`` in
request order, and the ``*_next`` counters fail exactly the next N requests, so tests can be
deterministic. Faults apply to ``/controller/rest/...`` calls (and to the token endpoint only
when ``affect_token`` is set).

From a string (CLI: ``artq simulator --faults "fail_next=2;error_status=504"``)::

    Faults.parse("error_rate=0.1;latency_s=0.2;max_in_flight=10;"
                 "missing_paths=Overall Application Performance|ABPServer3|Calls per Minute;"
                 "missing_hours=2026-11-20T03:00Z/2026-11-20T06:00Z")
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, fields, replace
from datetime import datetime

from artq.errors import ConfigError
from artq.timeutil import as_utc, floor_hour, parse_hour


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0  # probability that a request gets `error_status`
    error_status: int = 503  # 500, 503 or 504
    fail_next: int = 0  # the next N requests get `error_status` (deterministic)
    latency_s: float = 0.0  # added before every answer
    truncate_rate: float = 0.0  # probability of a JSON body cut in half
    truncate_next: int = 0
    malformed_rate: float = 0.0  # probability of valid JSON with wrong types / missing keys
    malformed_next: int = 0
    missing_hours: tuple[tuple[datetime, datetime], ...] = ()  # [start, end) hours with no data
    missing_paths: frozenset[str] = frozenset()  # concrete metric paths answered as unknown `[ ]`
    max_in_flight: int = 0  # >0: a request beyond this many in flight gets 503 at once
    affect_token: bool = False  # also fail/slow the OAuth token endpoint
    seed: int = 0  # of the RNG behind the *_rate faults

    def __post_init__(self) -> None:
        if self.error_status not in (500, 502, 503, 504):
            raise ConfigError(f"`error_status` must be 500, 502, 503 or 504. Got {self.error_status}.")
        for name in ("error_rate", "truncate_rate", "malformed_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"`{name}` must be a probability in [0, 1]. Got {v}.")
        for name in ("fail_next", "truncate_next", "malformed_next", "max_in_flight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"`{name}` must be >= 0. Got {getattr(self, name)}.")
        if self.latency_s < 0:
            raise ConfigError(f"`latency_s` must be >= 0. Got {self.latency_s}.")
        hours = tuple((floor_hour(as_utc(a)), floor_hour(as_utc(b))) for a, b in self.missing_hours)
        object.__setattr__(self, "missing_hours", hours)
        object.__setattr__(self, "missing_paths", frozenset(self.missing_paths))

    def hour_missing(self, hour_ms: int) -> bool:
        """True when the hour starting at ``hour_ms`` lies in one of ``missing_hours``."""
        return any(a.timestamp() * 1000 <= hour_ms < b.timestamp() * 1000 for a, b in self.missing_hours)

    @classmethod
    def parse(cls, text: str) -> Faults:
        """``key=value`` pairs separated by ``;`` (see the module docstring)."""
        kinds = {f.name: f for f in fields(cls)}
        kwargs: dict[str, object] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, value = part.partition("=")
            key = key.strip().replace("-", "_")
            if not sep or key not in kinds:
                raise ConfigError(
                    f"fault {part!r} must be key=value with key one of {', '.join(kinds)}."
                )
            kwargs[key] = _parse_value(key, value.strip())
        return cls(**kwargs)  # type: ignore[arg-type]


def _parse_value(key: str, value: str) -> object:
    try:
        if key in ("error_rate", "truncate_rate", "malformed_rate", "latency_s"):
            return float(value)
        if key == "affect_token":
            return value.lower() in ("1", "true", "yes", "on")
        if key == "missing_paths":
            return frozenset(p.strip() for p in value.split(",") if p.strip())
        if key == "missing_hours":
            spans = []
            for span in filter(None, value.split(",")):
                a, _, b = span.partition("/")
                spans.append((parse_hour(a, name="missing_hours"), parse_hour(b, name="missing_hours")))
            return tuple(spans)
        return int(value)
    except ValueError as exc:
        raise ConfigError(f"fault `{key}` has an invalid value {value!r}: {exc}") from None


@dataclass
class Verdict:
    """What the fault layer decided for one request."""

    status: int | None = None  # an injected error status, or None
    truncate: bool = False
    malformed: bool = False
    latency_s: float = 0.0


@dataclass
class FaultState:
    """The live faults of a running simulator: counters, RNG and the in-flight gauge."""

    faults: Faults = field(default_factory=Faults)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=random.Random)
    _next: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.set(self.faults)

    def set(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._next = {
                "fail": faults.fail_next,
                "truncate": faults.truncate_next,
                "malformed": faults.malformed_next,
            }

    def enter(self, is_token: bool) -> Verdict:
        """Count the request in and decide its faults (call :meth:`leave` when done)."""
        with self._lock:
            self.in_flight += 1
            f = self.faults
            if is_token and not f.affect_token:
                return Verdict()
            if f.max_in_flight and self.in_flight > f.max_in_flight:
                return Verdict(status=503)
            v = Verdict(latency_s=f.latency_s)
            if self._take("fail") or (f.error_rate and self._rng.random() < f.error_rate):
                v.status = f.error_status
            elif self._take("truncate") or (f.truncate_rate and self._rng.random() < f.truncate_rate):
                v.truncate = True
            elif self._take("malformed") or (f.malformed_rate and self._rng.random() < f.malformed_rate):
                v.malformed = True
            return v

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _take(self, kind: str) -> bool:
        if self._next[kind] > 0:
            self._next[kind] -= 1
            return True
        return False


__all__ = ["FaultState", "Faults", "Verdict", "replace"]
