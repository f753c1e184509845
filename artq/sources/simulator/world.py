"""The simulated world: a seeded, believable model of applications and their servers.

Each application is a *main server* (a gateway: AppDynamics' application level) in front of
its tiers (the sub-servers). Per minute and per tier:

* **Load** (calls per minute) = base level x a daily cycle (two harmonics, each tier with its
  own peak hour) x weekday levels (weekends quieter, blended across midnight) x slow growth
  (2-25 %/year) x traffic surges (campaign-like bumps of 1-4 h, +25-80 %, hitting tiers
  unevenly) x hourly and daily wobbles x per-minute noise.
* **Capacity** grows with the load (releases keep up) with a slow yearly drift, and is reset
  by **deployments** (Tue-Thu office hours, ~0.6/week/tier): each release sets a new level,
  and about one in eight is a regression (-10..-25 %) that lasts until the next release.
* **Response time** is queueing-like: ``service_ms / (1 - rho)`` with rho = load/capacity,
  capped at 15x the service time. Busy hours therefore cost far more than their extra load.
* **Incidents** (~1/week/app): one tier loses 35-70 % of its capacity for 1-10 h (ramping in
  over 15 min, out over 30), its service time and error rate rise; overload (rho > 0.85)
  adds timeouts to the errors; slow and very slow calls grow with the response time.
* The **main server** receives every call and routes it to one tier: its calls are the sum
  of the tiers', its ART the call-weighted mix of the tiers' ART plus its own gateway overhead
  (itself queueing on the total load). So a tier incident shows on the main server, diluted by
  that tier's share of the traffic and amplified by its queueing.
* **Reporting gaps**: each server misses ~0.1 % of minutes; ~0.15 outages/week/app drop 1-3
  whole hours for one server or the whole application.

Determinism: every value is a pure function of (seed, app, server, metric, minute). Random
numbers are counter-based hashes of (seed, app, server, stream, minute) and event schedules
are drawn per week/day block from keyed RNGs, so the same seed gives the same numbers whatever
window or resolution is asked for. Minutes are generated in (app, hour) blocks, vectorised,
and kept in a bounded LRU cache. Data never exists after ``now``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from artq.catalog import MAIN, METRICS_BY_KEY
from artq.errors import ConfigError
from artq.sources.simulator.config import SimApp, SimulatorConfig
from artq.sources.simulator.events import Deployment, Incident, Surge
from artq.sources.simulator.generate import AppModel
from artq.sources.simulator.tables import (
    METRIC_KEYS,
    Table,
    minute_table,
    reduce,
    true_values,
)
from artq.timeutil import as_utc

_HOUR_MS = 3_600_000


class _Block:
    __slots__ = ("hourly", "raw")

    def __init__(self, raw: np.ndarray, hourly: np.ndarray) -> None:
        self.raw = raw  # (N_FIELDS, servers, 60) per-minute raw fields
        self.hourly = hourly  # (metrics, 6 table fields, servers): the 60-minute aggregates


class World:
    """The seeded model behind the simulator; also the ground truth tests compare with."""

    def __init__(self, cfg: SimulatorConfig) -> None:
        self.cfg = cfg
        self.apps: dict[str, SimApp] = {a.name: a for a in cfg.applications}
        self._models: dict[str, AppModel] = {}
        self._cache: OrderedDict[tuple[str, int], _Block] = OrderedDict()
        self._lock = threading.Lock()

    # ---- clock and lookup --------------------------------------------------------------
    def now(self) -> datetime:
        return as_utc(self.cfg.now()) if self.cfg.now else datetime.now(UTC)

    def now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    def model(self, app: str) -> AppModel:
        if app not in self.apps:
            raise ConfigError(f"unknown simulated application {app!r}; known: {', '.join(self.apps)}.")
        with self._lock:
            if app not in self._models:
                self._models[app] = AppModel(self.cfg.seed, self.apps[app])
            return self._models[app]

    def servers(self, app: str) -> list[str]:
        return [MAIN, *self.apps[app].tiers]

    def server_index(self, app: str, server: str) -> int:
        try:
            return self.servers(app).index(server)
        except ValueError:
            raise ConfigError(
                f"unknown server {server!r} of {app!r}; use {MAIN!r} or one of {self.apps[app].tiers}."
            ) from None

    # ---- blocks ------------------------------------------------------------------------
    def _blocks(self, app: str, h0: int, h1: int) -> list[_Block]:
        """(app, hour) blocks for hours [h0, h1), generating missing runs in one vectorised pass."""
        with self._lock:
            found = {h: self._cache.get((app, h)) for h in range(h0, h1)}
            for h, b in found.items():
                if b is not None:
                    self._cache.move_to_end((app, h))
        missing = [h for h, b in found.items() if b is None]
        model = self.model(app) if missing else None
        for start, end in _runs(missing):
            raw = model.generate(start * 60, end * 60)
            hourly = _hourly_aggregates(raw, model.nodes)
            for k, h in enumerate(range(start, end)):
                found[h] = _Block(raw[:, :, k * 60 : (k + 1) * 60].copy(), hourly[..., k])
        if missing:
            with self._lock:
                for h in missing:
                    self._cache[(app, h)] = found[h]
                while len(self._cache) > max(self.cfg.cache_blocks, 1):
                    self._cache.popitem(last=False)
        return [found[h] for h in range(h0, h1)]

    def raw_minutes(self, app: str, h0: int, h1: int) -> np.ndarray:
        """Raw per-minute fields ``(N_FIELDS, servers, 60 * (h1 - h0))`` of hours [h0, h1)."""
        return np.concatenate([b.raw for b in self._blocks(app, h0, h1)], axis=-1)

    def hourly_tables(self, app: str, h0: int, h1: int) -> np.ndarray:
        """60-minute aggregates ``(metrics, 6 table fields, servers, hours)`` of hours [h0, h1)."""
        return np.stack([b.hourly for b in self._blocks(app, h0, h1)], axis=-1)

    # ---- ground truth ------------------------------------------------------------------
    def hourly(self, app: str, server: str, metric_key: str, start: datetime, end: datetime) -> pd.Series:
        """TRUE hourly values of hours [start, end): ART = sum/count of the hour's calls,
        counters = calls (errors, ...) per reported minute; NaN for hours with no data, and for
        hours not complete at ``now``."""
        if metric_key not in METRICS_BY_KEY:
            raise ConfigError(f"unknown metric key {metric_key!r}; use one of {', '.join(METRICS_BY_KEY)}.")
        s = self.server_index(app, server)
        h0, h1 = _hour_index(start), -(-int(as_utc(end).timestamp() * 1000) // _HOUR_MS)
        index = pd.date_range(pd.Timestamp(h0 * _HOUR_MS, unit="ms", tz="UTC"), periods=max(h1 - h0, 0), freq="h")
        if h1 <= h0:
            return pd.Series([], index=index, dtype=float, name=metric_key)
        tab = self.hourly_tables(app, h0, h1)[METRIC_KEYS.index(metric_key), :, s, :]
        vals = true_values(Table(*tab), metric_key)
        complete = (np.arange(h0, h1) + 1) * _HOUR_MS <= self.now_ms()
        return pd.Series(np.where(complete, vals, np.nan), index=index, name=metric_key)

    def incidents(self, app: str, start: datetime, end: datetime) -> list[Incident]:
        """Incidents overlapping [start, end)."""
        m0, m1 = (int(as_utc(t).timestamp()) // 60 for t in (start, end))
        return self.model(app).incidents(m0, m1)


    def surges(self, app: str, start: datetime, end: datetime) -> list[Surge]:
        """Traffic surges overlapping [start, end)."""
        m0, m1 = (int(as_utc(t).timestamp()) // 60 for t in (start, end))
        return self.model(app).surges(m0, m1)

    def deployments(self, app: str, start: datetime, end: datetime) -> list[Deployment]:
        """Releases in [start, end), all tiers, in time order."""
        m0, m1 = (int(as_utc(t).timestamp()) // 60 for t in (start, end))
        model = self.model(app)
        deps = [d for t in self.apps[app].tiers for d in model.deployments(t, m0, m1) if d.minute >= m0]
        return sorted(deps, key=lambda d: d.minute)


def _hour_index(t: datetime) -> int:
    return int(as_utc(t).timestamp() * 1000) // _HOUR_MS


def _runs(hours: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for h in hours:
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + 1)
        else:
            out.append((h, h + 1))
    return out


def _hourly_aggregates(raw: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    per_metric = [np.stack(reduce(minute_table(raw, k, nodes), 60).arrays()) for k in METRIC_KEYS]
    return np.stack(per_metric)  # (metrics, 6, servers, hours)
