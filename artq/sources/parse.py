"""Validate AppDynamics ``metric-data`` responses and turn them into hourly values.

Pure functions, no I/O: the client feeds them response bodies, tests feed them anything.
Every malformed body ends in :class:`~artq.errors.InvalidResponse` naming the metric path and
what was wrong; nothing else escapes (the property tests hold us to that).

Decisions the API spec leaves open:

- Numbers must be JSON integers (the controller sends Java longs). A float that is a whole
  number (``412.0``) is accepted as that integer, because re-encoding proxies and JS tooling
  emit integers that way without changing the value; a fraction, NaN or infinity is rejected,
  as are booleans and numbers outside a Java long (a body with NaN is not JSON at all).
- Every metric artq reads is a count, a total or an average of durations, so a negative
  ``count``, ``sum`` or ``value`` cannot be true; it is well-formed, though, so it does not
  fail the response: its hour becomes a gap with the reason (``rejected``), like any value
  outside the plausible bounds of its metric (:func:`check_plausible`, ``source.plausible``).
- Only the entries artq reads (``catalog.parse_metric_path`` knows the path, and the server is
  the main server or a configured tier) are validated in depth: a broken metric nobody reads
  must not stop the forecasts.
- Buckets outside the requested window are validated but not used: a controller whose window
  end is inclusive would otherwise count a boundary bucket in two adjacent windows.
- An hour's value: ART = Σsum / Σcount (count-weighted); counters = Σsum / minutes covered by
  the returned buckets (1, 10 or 60 per bucket; the whole window for a rolled-up point).
  An ART hour with no calls (Σcount = 0) has no value and is reported missing.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from artq.catalog import MAIN, METRICS, Metric, Rollup, parse_metric_path
from artq.errors import InvalidResponse
from artq.timeutil import to_ms

FREQUENCY_MINUTES = {"ONE_MIN": 1, "TEN_MIN": 10, "SIXTY_MIN": 60}
NOT_FOUND = "METRIC DATA NOT FOUND"
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
MAX_LONG = 2**63 - 1  # the controller's integers are Java longs
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond it datetime cannot follow
_VALUE_KEYS = ("startTimeInMillis", "count", "sum", "value")


@dataclass(frozen=True)
class HourlyValue:
    server: str  # catalog.MAIN or a tier name
    metric: str  # Metric.key ("art", "cpm", ...)
    hour: datetime  # aware UTC start of the hour
    value: float


Missing = tuple[str, str, datetime]  # (server, metric key, hour) the source had no data for
Rejected = tuple[str, str, datetime, str]  # (server, metric key, hour, why): a value refused as implausible


@dataclass(frozen=True)
class Window:
    """One metric-data request's time range ``[start_ms, end_ms)`` and its rollup flag."""

    start_ms: int
    end_ms: int
    rollup: bool

    def __post_init__(self) -> None:
        # Hour-aligned windows keep every bucket inside one hour; a rolled-up point is
        # attributed to its window, so that window must be exactly one hour.
        if self.start_ms % HOUR_MS or self.end_ms % HOUR_MS or self.end_ms <= self.start_ms:
            raise ValueError(f"window must be whole UTC hours with end > start. Got {self}.")
        if self.rollup and self.end_ms - self.start_ms != HOUR_MS:
            raise ValueError(f"a rollup window must span exactly one hour. Got {self}.")


@dataclass(frozen=True)
class Bucket:
    start_ms: int
    minutes: int  # minutes the bucket covers: 1, 10, 60, or the whole window for a rollup
    count: int
    sum: int
    negative: bool = False  # a negative count, sum or value: the hour becomes a gap


@dataclass(frozen=True)
class Series:
    """The in-window buckets of one metric artq reads, from one response."""

    server: str
    metric: Metric
    path: str
    buckets: tuple[Bucket, ...]


def decode_json(body: bytes | str, what: str) -> Any:
    """Parse a JSON body; anything that is not standard JSON raises InvalidResponse."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except _NonStandard as exc:
        raise InvalidResponse(f"{what}: the body holds {exc}, which is not JSON.") from None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, >4300-digit ints
        where = f" at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidResponse(
            f"{what}: the body is not complete JSON{where} (truncated or not JSON). "
            f"Starts with {_short(body, 60)}."
        ) from None


def parse_metric_data(body: bytes | str, window: Window, servers: Collection[str]) -> list[Series]:
    """Decode and validate one metric-data body; keep the in-window buckets artq reads."""
    return parse_series(decode_json(body, "metric-data response"), window, servers)


def parse_series(payload: Any, window: Window, servers: Collection[str]) -> list[Series]:
    """Validate a decoded metric-data payload (see the module docstring for the rules)."""
    if not isinstance(payload, list):
        raise InvalidResponse(
            f"metric-data response: expected a JSON array of metrics. Got {type(payload).__name__} "
            f"{_short(payload)}."
        )
    out: list[Series] = []
    seen: set[str] = set()
    for i, entry in enumerate(payload):
        if not isinstance(entry, dict):
            raise InvalidResponse(f"metric-data response: entry {i} must be an object. Got {_short(entry)}.")
        path = entry.get("metricPath")
        if not isinstance(path, str):
            raise InvalidResponse(
                f"metric-data response: entry {i} has no string `metricPath`. Got {_short(path)}."
            )
        known = parse_metric_path(path)
        if known is None or known[0] not in servers:
            continue  # a metric or tier artq does not read
        if path in seen:
            raise InvalidResponse(f"invalid metric-data for {path}: the path appears twice in one response.")
        seen.add(path)
        out.append(_series(entry, path, known[0], known[1], window))
    return out


def _series(entry: dict, path: str, server: str, metric: Metric, window: Window) -> Series:
    def bad(what: str) -> InvalidResponse:
        return InvalidResponse(f"invalid metric-data for {path}: {what}")

    frequency = entry.get("frequency")
    if not isinstance(frequency, str) or frequency not in FREQUENCY_MINUTES:
        raise bad(f"`frequency` must be ONE_MIN, TEN_MIN or SIXTY_MIN. Got {_short(frequency)}.")
    name = entry.get("metricName")
    if name is not None and not isinstance(name, str):
        raise bad(f"`metricName` must be a string. Got {_short(name)}.")
    values = entry.get("metricValues")
    if not isinstance(values, list):
        raise bad(f"`metricValues` must be a list. Got {_short(values)}.")
    if name == NOT_FOUND and values:
        raise bad(f"marked {NOT_FOUND} but carries {len(values)} values.")
    if window.rollup and len(values) > 1:
        raise bad(f"a rolled-up (rollup=true) answer has one point per metric. Got {len(values)}.")

    step_ms = FREQUENCY_MINUTES[frequency] * MINUTE_MS
    buckets: list[Bucket] = []
    previous = -1
    for j, item in enumerate(values):
        if not isinstance(item, dict):
            raise bad(f"metricValues[{j}] must be an object. Got {_short(item)}.")
        start = _long(item, "startTimeInMillis", j, bad)
        count, total, value = (_long(item, key, j, bad, signed=True) for key in _VALUE_KEYS[1:])
        negative = min(count, total, value) < 0
        if start > MAX_TIME_MS:
            raise bad(f"metricValues[{j}].startTimeInMillis {start} is not a plausible epoch-ms time.")
        if window.rollup:
            # A rolled-up point starts at its window's start (minute-aligned), whatever `frequency`.
            if start % MINUTE_MS or not window.start_ms <= start < window.end_ms:
                raise bad(
                    f"the rolled-up point starts at {start}, not on a minute inside the requested "
                    f"window [{window.start_ms}, {window.end_ms})."
                )
        elif start % step_ms:
            raise bad(f"metricValues[{j}].startTimeInMillis {start} is not aligned to {frequency} buckets.")
        if start <= previous:
            raise bad(f"metricValues[{j}].startTimeInMillis {start} is not after the previous bucket ({previous}).")
        previous = start
        if not negative and metric.rollup is Rollup.AVERAGE and count == 0 and total != 0:
            raise bad(f"metricValues[{j}] has count 0 but sum {total}: an average needs at least one call.")
        if window.rollup:
            minutes = (window.end_ms - window.start_ms) // MINUTE_MS
            buckets.append(Bucket(window.start_ms, minutes, count, total, negative))
        elif window.start_ms <= start < window.end_ms:
            buckets.append(Bucket(start, FREQUENCY_MINUTES[frequency], count, total, negative))
    return Series(server, metric, path, tuple(buckets))


def _long(item: dict, key: str, j: int, bad: Any, signed: bool = False) -> int:
    if key not in item:
        raise bad(f"metricValues[{j}] has no `{key}`.")
    v = item[key]
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)  # a whole float is the same integer (see module docstring)
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad(f"metricValues[{j}].{key} must be an integer. Got {_short(v)}.")
    if signed and not -MAX_LONG - 1 <= v <= MAX_LONG:
        raise bad(f"metricValues[{j}].{key} must be a 64-bit integer. Got {_short(v)}.")
    if not signed and not 0 <= v <= MAX_LONG:
        raise bad(f"metricValues[{j}].{key} must be a non-negative 64-bit integer. Got {_short(v)}.")
    return v


def hourly_values(
    series: Iterable[Series], servers: Sequence[str], hours: Sequence[datetime],
    rejected: list[Rejected] | None = None,
) -> tuple[list[HourlyValue], list[Missing]]:
    """Hourly values of every (server, metric, hour) expected, and the triples without one.

    ``servers`` is ``[MAIN, *tiers]``; every metric of ``catalog.METRICS`` is expected for each.
    Output order: server as given, metric as in the catalogue, then hour. An hour with a
    negative bucket is missing, and also appended to ``rejected`` (when given) with the reason.
    """
    acc: dict[tuple[str, str, int], list[int]] = {}  # -> [Σsum, Σcount, minutes, negative buckets]
    seen: set[tuple[str, str, int]] = set()
    for s in series:
        for b in s.buckets:
            key = (s.server, s.metric.key, b.start_ms)
            if key in seen:
                raise InvalidResponse(
                    f"invalid metric-data for {s.path}: two values for the bucket starting at {b.start_ms}."
                )
            seen.add(key)
            a = acc.setdefault((s.server, s.metric.key, b.start_ms - b.start_ms % HOUR_MS), [0, 0, 0, 0])
            a[0] += b.sum
            a[1] += b.count
            a[2] += b.minutes
            a[3] += b.negative
    values: list[HourlyValue] = []
    missing: list[Missing] = []
    for server in servers:
        for metric in METRICS:
            for hour in hours:
                a = acc.get((server, metric.key, to_ms(hour)))
                value = None
                if a is not None and a[3]:
                    if rejected is not None:
                        rejected.append((server, metric.key, hour, "negative count, sum or value from the controller"))
                elif a is not None:
                    if metric.rollup is Rollup.AVERAGE:
                        value = a[0] / a[1] if a[1] else None
                    else:
                        value = a[0] / a[2]
                if value is None:
                    missing.append((server, metric.key, hour))
                else:
                    values.append(HourlyValue(server, metric.key, hour, value))
    return values, missing


def check_plausible(
    values: Iterable[HourlyValue], bounds: dict[str, tuple[float, float | None]]
) -> tuple[list[HourlyValue], list[Rejected]]:
    """Split ``values`` into the plausible ones and the rest: not finite, or outside the metric's
    ``(min, max)`` (``max`` None: no upper bound; a metric without bounds: min 0, no max)."""
    kept: list[HourlyValue] = []
    refused: list[Rejected] = []
    for v in values:
        low, high = bounds.get(v.metric, (0.0, None))
        if not math.isfinite(v.value):
            why = f"{v.value} is not a finite number"
        elif v.value < low:
            why = f"{v.value:.6g} is below the plausible minimum {low:g} (source.plausible.{v.metric}.min)"
        elif high is not None and v.value > high:
            why = f"{v.value:.6g} is above the plausible maximum {high:g} (source.plausible.{v.metric}.max)"
        else:
            kept.append(v)
            continue
        refused.append((v.server, v.metric, v.hour, why))
    return kept, refused


def expected_servers(tiers: Iterable[str]) -> list[str]:
    """``[MAIN, *tiers]`` without repeats, in order."""
    return list(dict.fromkeys([MAIN, *tiers]))


class _NonStandard(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonStandard(name)  # NaN / Infinity: Python's json accepts them, JSON does not


_REPR = reprlib.Repr()
_REPR.maxstring = 60
_REPR.maxother = 60


def _short(value: Any, limit: int = 80) -> str:
    text = _REPR.repr(value)  # depth- and length-limited: garbage can be deeply nested
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "Bucket",
    "Rejected",
    "check_plausible",
    "HourlyValue",
    "Missing",
    "Series",
    "Window",
    "decode_json",
    "expected_servers",
    "hourly_values",
    "parse_metric_data",
    "parse_series",
]
