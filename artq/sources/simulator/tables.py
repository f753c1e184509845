"""Per-minute raw fields → per-metric tables → buckets, with AppDynamics' aggregation rules.

A *table* is six integer arrays of the same shape ``(servers, n)``: ``sum``, ``count``,
``min``, ``max``, ``current`` and ``n`` (minutes with data). Reducing a table over groups of
``g`` consecutive entries gives the next resolution, so 1-, 10- and 60-minute buckets and the
rolled-up point all come from the same minutes and always agree.

* Average metrics (ART): ``value = round(sum / count)``; min/max/current are real ms.
* Per-minute counters (CPM, EPM, ...): ``sum`` is the total, ``count`` the number of reports
  (one per node per minute), ``value = round(sum / minutes with data)``, min = max = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artq.catalog import METRICS, Rollup

# Raw per-minute fields a world block holds, axis 0 of the (F, servers, minutes) stack.
CALLS, ART_SUM, ART_MIN, ART_MAX, ERRORS, EXCEPTIONS, SLOW, VERY_SLOW, PRESENT = range(9)
N_FIELDS = 9
COUNTER_FIELD = {"cpm": CALLS, "epm": ERRORS, "exceptions": EXCEPTIONS, "slow": SLOW, "very_slow": VERY_SLOW}
METRIC_KEYS = tuple(m.key for m in METRICS)
_BIG = np.iinfo(np.int64).max


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Java's Math.round for positive values (numpy's rint rounds half to even)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


@dataclass
class Table:
    sum: np.ndarray
    count: np.ndarray
    min: np.ndarray
    max: np.ndarray
    current: np.ndarray
    n: np.ndarray  # minutes with data; 0 means "no point here"

    def take(self, index: object) -> Table:
        return Table(*(a[index] for a in self.arrays()))

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.sum, self.count, self.min, self.max, self.current, self.n)


def minute_table(raw: np.ndarray, metric_key: str, nodes: np.ndarray) -> Table:
    """The 1-minute table of one metric from the raw stack ``(N_FIELDS, servers, minutes)``."""
    present = raw[PRESENT].astype(bool)
    if metric_key == "art":
        calls = raw[CALLS]
        ok = present & (calls > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cur = round_half_up(np.where(ok, raw[ART_SUM] / np.maximum(calls, 1), 0))
        return Table(raw[ART_SUM], calls, raw[ART_MIN], raw[ART_MAX], cur, ok.astype(np.int64))
    x = raw[COUNTER_FIELD[metric_key]]
    zeros = np.zeros_like(x)
    count = np.broadcast_to(nodes[:, None], x.shape).astype(np.int64)
    return Table(x, count, zeros, zeros, x, present.astype(np.int64))


def reduce(t: Table, g: int) -> Table:
    """Aggregate groups of ``g`` consecutive entries on the last axis (its length divisible by g)."""
    shape = t.sum.shape[:-1] + (t.sum.shape[-1] // g, g)
    n = t.n.reshape(shape)
    ok = n > 0
    s = np.where(ok, t.sum.reshape(shape), 0).sum(-1)
    c = np.where(ok, t.count.reshape(shape), 0).sum(-1)
    mn = np.where(ok, t.min.reshape(shape), _BIG).min(-1)
    mx = np.where(ok, t.max.reshape(shape), -1).max(-1)
    last = g - 1 - np.argmax(ok[..., ::-1], axis=-1)  # last entry with data in each group
    cur = np.take_along_axis(t.current.reshape(shape), last[..., None], -1)[..., 0]
    nn = n.sum(-1)
    empty = nn == 0
    return Table(s, c, np.where(empty, 0, mn), np.where(empty, 0, mx), np.where(empty, 0, cur), nn)


def values(t: Table, metric_key: str) -> np.ndarray:
    """The headline ``value`` of each bucket (0 where the bucket has no data)."""
    rollup = next(m.rollup for m in METRICS if m.key == metric_key)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rollup is Rollup.AVERAGE:
            return np.where(t.count > 0, round_half_up(t.sum / np.maximum(t.count, 1)), 0)
        return np.where(t.n > 0, round_half_up(t.sum / np.maximum(t.n, 1)), 0)


def true_values(t: Table, metric_key: str) -> np.ndarray:
    """Unrounded hourly truth: sum/count for ART, sum per reported minute for counters; NaN if empty."""
    rollup = next(m.rollup for m in METRICS if m.key == metric_key)
    with np.errstate(divide="ignore", invalid="ignore"):
        if rollup is Rollup.AVERAGE:
            return np.where(t.count > 0, t.sum / np.maximum(t.count, 1), np.nan)
        return np.where(t.n > 0, t.sum / np.maximum(t.n, 1), np.nan)
