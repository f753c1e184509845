"""``/metric-data``: time ranges, bucket sizes, and the entries for a list of metrics (spec §4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artq.sources.simulator.entities import AppEntities, RegisteredMetric
from artq.sources.simulator.faults import Faults
from artq.sources.simulator.tables import (
    METRIC_KEYS,
    PRESENT,
    Table,
    minute_table,
    reduce,
    values,
)
from artq.sources.simulator.world import World

MINUTE_MS, HOUR_MS = 60_000, 3_600_000
TIME_RANGE_TYPES = ("BEFORE_NOW", "BEFORE_TIME", "AFTER_TIME", "BETWEEN_TIMES")
FREQUENCY = {1: "ONE_MIN", 10: "TEN_MIN", 60: "SIXTY_MIN"}
NOT_FOUND = "METRIC DATA NOT FOUND"
# SaaS keeps hourly data 365 days (spec §5); older buckets are gone. This also bounds the work
# a careless range (start-time=0) can cause. 1- and 10-minute retention is not modelled.
RETENTION_MS = 365 * 24 * HOUR_MS


class BadRequest(Exception):
    """A client mistake: answered 400 with this message as plain text."""


@dataclass(frozen=True)
class TimeRange:
    start_ms: int
    end_ms: int

    @property
    def bucket_minutes(self) -> int:
        """Bucket size from the range length (24.x docs): <1460 min → 1, ≤2940 → 10, else 60."""
        minutes = (self.end_ms - self.start_ms) / MINUTE_MS
        return 1 if minutes < 1460 else 10 if minutes <= 2940 else 60


def parse_time_range(q: dict[str, str], now_ms: int) -> TimeRange:
    kind = q.get("time-range-type", "")
    if kind not in TIME_RANGE_TYPES:
        raise BadRequest(
            f"Invalid time-range-type {kind!r}: use one of {', '.join(TIME_RANGE_TYPES)}."
            if kind else "Missing parameter time-range-type: use one of " + ", ".join(TIME_RANGE_TYPES) + "."
        )
    need = {
        "BEFORE_NOW": ("duration-in-mins",),
        "BEFORE_TIME": ("end-time", "duration-in-mins"),
        "AFTER_TIME": ("start-time", "duration-in-mins"),
        "BETWEEN_TIMES": ("start-time", "end-time"),
    }[kind]
    v = {name: _integer(q, name, kind) for name in need}
    if "duration-in-mins" in v and v["duration-in-mins"] <= 0:
        raise BadRequest(f"duration-in-mins must be a positive number of minutes. Got {v['duration-in-mins']}.")
    d = v.get("duration-in-mins", 0) * MINUTE_MS
    start, end = {
        "BEFORE_NOW": lambda: (now_ms - d, now_ms),
        "BEFORE_TIME": lambda: (v["end-time"] - d, v["end-time"]),
        "AFTER_TIME": lambda: (v["start-time"], v["start-time"] + d),
        "BETWEEN_TIMES": lambda: (v["start-time"], v["end-time"]),
    }[kind]()
    if end <= start:
        raise BadRequest(f"end-time ({end}) must be after start-time ({start}) for {kind}.")
    return TimeRange(start, end)


def _integer(q: dict[str, str], name: str, kind: str) -> int:
    raw = q.get(name, "").strip()
    if not raw:
        raise BadRequest(f"Missing parameter {name}: {kind} needs it.")
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"Parameter {name} must be a whole number (epoch ms or minutes). Got {raw!r}.") from None


def entries(world: World, ent: AppEntities, metrics: list[RegisteredMetric], tr: TimeRange,
            rollup: bool, faults: Faults) -> list[dict]:
    """One entry per metric, in the order given; NOT FOUND for a metric with no data in range."""
    b = tr.bucket_minutes
    bms = b * MINUTE_MS
    now = world.now_ms()
    # bucket index: start >= range start (and within retention) ...
    first = max(-(-tr.start_ms // bms), -(-(now - RETENTION_MS) // bms))
    last = min(-(-tr.end_ms // bms), now // bms)  # ... < range end, and complete by now
    keys = sorted({m.metric_key for m in metrics if m.metric_key}, key=METRIC_KEYS.index)
    tb, tfirst, tlast = b, first, last
    if rollup and b < 60 and (first * b) % 60 == 0 and (last * b) % 60 == 0:
        # whole hours: the cached hourly aggregates roll up to exactly the same point, cheaper
        tb, tfirst, tlast = 60, first * b // 60, last * b // 60
    tables = _tables(world, ent.app.name, keys, tb, tfirst, tlast, faults) if tlast > tfirst and keys else {}
    servers = world.servers(ent.app.name)
    out = []
    for m in metrics:
        t = tables.get(m.metric_key) if m.metric_key else None
        row = t.take(servers.index(m.server)) if t is not None else None
        if row is not None and rollup:
            if row.n.shape[-1] > 1:
                row = reduce(Table(*(a[None, :] for a in row.arrays())), row.n.shape[-1]).take(0)
            starts = np.array([-(-tr.start_ms // MINUTE_MS) * MINUTE_MS])
        else:
            starts = (np.arange(first, last) * bms) if row is not None else None
        if row is None or not row.n.any():
            out.append(_entry(m, "ONE_MIN", []))
            continue
        out.append(_entry(m, FREQUENCY[b], _points(row, starts, m.metric_key, occurrences=0 if rollup else 1)))
    return out


def _tables(world: World, app: str, keys: list[str], b: int, first: int, last: int,
            faults: Faults) -> dict[str, Table]:
    """Bucket tables (servers, buckets first..last-1) for each metric key."""
    if b == 60:
        hourly = world.hourly_tables(app, first, last)  # (metrics, 6, servers, hours)
        gone = _missing(faults, np.arange(first, last) * 60)
        out = {}
        for k in keys:
            t = Table(*hourly[METRIC_KEYS.index(k)])
            if gone is not None:
                t.n = np.where(gone, 0, t.n)
            out[k] = t
        return out
    h0, h1 = first * b // 60, -(-last * b // 60)
    raw = world.raw_minutes(app, h0, h1)
    gone = _missing(faults, np.arange(h0 * 60, h1 * 60))
    if gone is not None:
        raw = raw.copy()
        raw[PRESENT] = np.where(gone, 0, raw[PRESENT])
    nodes = world.model(app).nodes
    lo = first - h0 * 60 // b
    return {k: reduce(minute_table(raw, k, nodes), b).take((slice(None), slice(lo, lo + last - first))) for k in keys}


def _missing(faults: Faults, minutes: np.ndarray) -> np.ndarray | None:
    """Mask of minutes inside the ``missing_hours`` fault, or None when the fault is off."""
    if not faults.missing_hours:
        return None
    ms = minutes * MINUTE_MS
    gone = np.zeros(len(minutes), dtype=bool)
    for a, z in faults.missing_hours:
        gone |= (ms >= int(a.timestamp() * 1000)) & (ms < int(z.timestamp() * 1000))
    return gone


def _entry(m: RegisteredMetric, frequency: str, points: list[dict]) -> dict:
    return {
        "metricId": m.metric_id,
        "metricName": m.metric_name if points else NOT_FOUND,
        "metricPath": m.path,
        "frequency": frequency,
        "metricValues": points,
    }


def _points(t: Table, starts: np.ndarray, key: str, occurrences: int) -> list[dict]:
    use_range = key == "art"
    keep = t.n > 0
    cols = [starts[keep], t.current[keep], t.min[keep], t.max[keep], t.count[keep], t.sum[keep], values(t, key)[keep]]
    return [
        {"startTimeInMillis": s, "occurrences": occurrences, "current": cur, "min": mn, "max": mx,
         "useRange": use_range, "count": c, "sum": sm, "value": v, "standardDeviation": 0}
        for s, cur, mn, mx, c, sm, v in zip(*(c.tolist() for c in cols))
    ]
