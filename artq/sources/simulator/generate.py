"""Per-minute generation of one application's servers, vectorised over minutes with numpy.

See :mod:`artq.sources.simulator.world` for the model in words. Every random number comes from
:mod:`.rng` keyed by (seed, app, server, stream) with the minute as counter, and every event
from :mod:`.events`, so a minute's values never depend on the window being generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from artq.sources.simulator import events as ev
from artq.sources.simulator import rng
from artq.sources.simulator.config import SimApp
from artq.sources.simulator.tables import (
    ART_MAX,
    ART_MIN,
    ART_SUM,
    CALLS,
    ERRORS,
    EXCEPTIONS,
    N_FIELDS,
    PRESENT,
    SLOW,
    VERY_SLOW,
)

MIN_2026 = 29_420_640  # 2026-01-01T00:00Z in minutes since the epoch: the reference of growth
MIN_PER_YEAR = 525_960
RHO_FLOOR = 1 / 15  # 1/(1-rho) is capped at 15x the service time: queues time out, not grow forever


def response_time(service_ms: np.ndarray | float, rho: np.ndarray | float) -> np.ndarray:
    """Queueing-like response time: flat at low utilisation, bending sharply as rho nears 1."""
    return np.asarray(service_ms) / np.maximum(1.0 - np.asarray(rho), RHO_FLOOR)


@dataclass(frozen=True)
class TierParams:
    name: str
    key: int
    nodes: int
    base_cpm: float  # calls per minute at the average point of the daily/weekly cycle
    amp1: float  # daily cycle: first harmonic amplitude (log scale) and its peak hour (UTC)
    peak1: float
    amp2: float
    peak2: float
    weekday: tuple[float, ...]  # Monday..Sunday load levels
    growth: float  # per year, log scale
    capacity: float  # calls per minute the tier can serve at the reference date
    service_ms: float
    drift_phase: float
    error_rate: float
    exc_per_error: float
    exc_per_call: float
    slow_share: float


@dataclass(frozen=True)
class MainParams:
    key: int
    overhead_ms: float
    peak_util: float  # the gateway's own utilisation in the busiest regular minute
    error_rate: float


def tier_params(seed: int, app: str, tier: str) -> TierParams:
    key = rng.stable_key(seed, app, tier)
    g = np.random.default_rng([key & 0xFFFFFFFF, key >> 32])
    amp1, amp2 = float(g.uniform(0.3, 0.7)), float(g.uniform(0.05, 0.25))
    weekday = tuple(float(x) for x in np.r_[g.normal(1.0, 0.04, 5), g.uniform(0.55, 0.85, 2)])
    base_cpm = float(np.exp(g.normal(np.log(250), 0.6)))
    busiest = base_cpm * np.exp(amp1 + amp2) * max(weekday)
    return TierParams(
        name=tier,
        key=key,
        nodes=int(g.integers(1, 5)),
        base_cpm=base_cpm,
        amp1=amp1,
        peak1=float(g.uniform(9.0, 16.0)),
        amp2=amp2,
        peak2=float(g.uniform(0.0, 12.0)),
        weekday=weekday,
        growth=float(g.uniform(0.02, 0.25)),
        # headroom over the busiest regular minute: peaks run at utilisation 0.5..0.8
        capacity=float(busiest / g.uniform(0.5, 0.8)),
        service_ms=float(np.exp(g.normal(np.log(120), 0.5))),
        drift_phase=float(g.uniform(0, 2 * np.pi)),
        error_rate=float(g.uniform(0.0005, 0.006)),
        exc_per_error=float(g.uniform(1.0, 3.0)),
        exc_per_call=float(g.uniform(0.0, 0.004)),
        slow_share=float(g.uniform(0.002, 0.01)),
    )


def main_params(seed: int, app: str) -> MainParams:
    key = rng.stable_key(seed, app, "<main>")
    g = np.random.default_rng([key & 0xFFFFFFFF, key >> 32])
    return MainParams(
        key=key,
        overhead_ms=float(g.uniform(5.0, 30.0)),
        peak_util=float(g.uniform(0.35, 0.6)),
        error_rate=float(g.uniform(0.0001, 0.001)),
    )


class AppModel:
    """Parameters and event schedules of one application; :meth:`generate` makes its minutes."""

    def __init__(self, seed: int, app: SimApp) -> None:
        self.app = app
        self.key = rng.stable_key(seed, app.name)
        self.tiers = [tier_params(seed, app.name, t) for t in app.tiers]
        self.main = main_params(seed, app.name)
        busiest = sum(t.capacity for t in self.tiers) * 0.7  # ~ the tiers' summed busiest load
        self.main_capacity = busiest / self.main.peak_util
        self.nodes = np.array([sum(t.nodes for t in self.tiers)] + [t.nodes for t in self.tiers])
        self._keys = np.array([t.key for t in self.tiers], dtype=np.uint64)[:, None]
        names = ("base_cpm", "amp1", "peak1", "amp2", "peak2", "growth", "capacity", "service_ms",
                 "drift_phase", "error_rate", "exc_per_error", "exc_per_call", "slow_share")
        self._p = {n: np.array([getattr(t, n) for t in self.tiers])[:, None] for n in names}
        self._p["weekday"] = np.array([t.weekday for t in self.tiers])

    # ---- event schedules -------------------------------------------------------------------
    def incidents(self, m0: int, m1: int) -> list[ev.Incident]:
        """Incidents overlapping minutes [m0, m1), in start order."""
        names = tuple(self.app.tiers)
        out = [
            i
            for w in ev.weeks_covering(m0, m1)
            for i in ev.incidents_of_week(self.key, w, names, self.app.incidents_per_week)
            if i.start_min < m1 and i.end_min > m0
        ]
        return sorted(out, key=lambda i: i.start_min)

    def deployments(self, tier: str, m0: int, m1: int) -> list[ev.Deployment]:
        """Deployments of ``tier`` in [m0 - 8 weeks, m1): the last one before m0 sets the level."""
        weeks = ev.weeks_covering(m0, m1, back=ev.DEPLOY_LOOKBACK_WEEKS)
        rate = self.app.deployments_per_week
        return [d for w in weeks for d in ev.deployments_of_week(self.key, w, tier, rate) if d.minute < m1]

    def surges(self, m0: int, m1: int) -> list[ev.Surge]:
        days = range(m0 // ev.MIN_PER_DAY - 1, (m1 - 1) // ev.MIN_PER_DAY + 1)
        n, rate = len(self.tiers), self.app.surges_per_day
        return [s for d in days for s in ev.surges_of_day(self.key, d, n, rate) if s.start_min < m1 and s.end_min > m0]

    def outages(self, m0: int, m1: int) -> list[ev.Outage]:
        n, rate = len(self.tiers), self.app.outages_per_week
        return [
            o
            for w in ev.weeks_covering(m0, m1)
            for o in ev.outages_of_week(self.key, w, n, rate)
            if o.start_min < m1 and o.end_min > m0
        ]

    # ---- minutes ---------------------------------------------------------------------------
    def generate(self, m0: int, m1: int) -> np.ndarray:
        """Raw fields ``(N_FIELDS, 1 + tiers, m1 - m0)`` for minutes [m0, m1); server 0 is main.

        Vectorised over (tier, minute): arrays of tier parameters have shape (tiers, 1).
        """
        m = np.arange(m0, m1, dtype=np.int64)
        n_t = len(self.tiers)
        raw = np.zeros((N_FIELDS, n_t + 1, m1 - m0), dtype=np.int64)
        P = self._p
        years = (m - MIN_2026) / MIN_PER_YEAR
        growth = np.exp(P["growth"] * years)
        load = P["base_cpm"] * self._cycles(m) * growth
        for sg in self.surges(m0, m1):
            load = load * (1.0 + sg.amplitude * np.asarray(sg.weights)[:, None] * sg.bump(m))
        load = load * np.exp(0.05 * rng.normal(rng.salted(self._keys, 11), m))
        calls = np.maximum(rng.round_calls(load), 0)
        cap_level, svc_level = self._release_levels(m0, m1, m)
        drift = 1 + 0.06 * np.sin(2 * np.pi * years + P["drift_phase"])
        cap = P["capacity"] * growth * drift * cap_level
        svc = P["service_ms"] * svc_level
        err = np.broadcast_to(P["error_rate"], cap.shape).copy()
        for inc in self.incidents(m0, m1):
            j = self.app.tiers.index(inc.tier)
            p = inc.profile(m)
            cap[j] *= 1 - (1 - inc.capacity_factor) * p
            svc[j] *= 1 + (inc.service_factor - 1) * p
            err[j] += inc.error_rate * p
        rho = calls / cap
        resp = response_time(svc, rho)
        mean = resp * np.exp(0.05 * rng.normal(rng.salted(self._keys, 12), m))
        t = raw[:, 1:]
        t[CALLS] = calls
        t[ART_SUM] = np.rint(calls * mean)
        t[ART_MIN] = np.maximum(1, np.rint(mean * (0.1 + 0.15 * rng.uniform(rng.salted(self._keys, 13), m))))
        spread = (2.5 + 0.5 * np.log1p(calls)) * np.exp(0.25 * rng.normal(rng.salted(self._keys, 14), m))
        t[ART_MAX] = np.maximum(t[ART_MIN], np.rint(mean * spread))
        err = err + 0.1 * np.clip((rho - 0.85) / 0.15, 0, 1) ** 2  # overload: timeouts, 503s
        t[ERRORS] = rng.poisson(rng.salted(self._keys, 15), m, calls * np.minimum(err, 0.9))
        lam_exc = t[ERRORS] * P["exc_per_error"] + calls * P["exc_per_call"]
        t[EXCEPTIONS] = rng.poisson(rng.salted(self._keys, 16), m, lam_exc)
        ratio = resp / P["service_ms"]
        p_slow = np.clip(P["slow_share"] * ratio**1.6, 0, 0.6)
        t[SLOW] = rng.poisson(rng.salted(self._keys, 17), m, calls * p_slow)
        p_very = p_slow * np.clip(0.06 * ratio**0.8, 0, 0.5)
        t[VERY_SLOW] = rng.poisson(rng.salted(self._keys, 18), m, calls * p_very)
        self._main(raw, m, years)
        raw[PRESENT] = self._present(m0, m1, m)
        return raw

    def _cycles(self, m: np.ndarray) -> np.ndarray:
        P = self._p
        hour_of_day = (m % ev.MIN_PER_DAY) / 60.0
        daily = np.exp(
            P["amp1"] * np.cos(2 * np.pi * (hour_of_day - P["peak1"]) / 24)
            + P["amp2"] * np.cos(4 * np.pi * (hour_of_day - P["peak2"]) / 24)
        )
        # weekday levels, blended smoothly across midnight (cosine between day centres)
        pos = (m + ev.WEEK_OFFSET_MIN) % ev.MIN_PER_WEEK / ev.MIN_PER_DAY - 0.5
        i0 = np.floor(pos).astype(np.int64)
        blend = (1 - np.cos(np.pi * (pos - i0))) / 2
        w = P["weekday"]  # (tiers, 7)
        weekly = w[:, i0 % 7] * (1 - blend) + w[:, (i0 + 1) % 7] * blend
        # slow wobbles: one level per hour (interpolated) and one per day, so hours differ
        hour, frac = m // 60, (m % 60) / 60.0
        k = rng.salted(self._keys, 21)
        wob = (1 - frac) * rng.normal(k, hour) + frac * rng.normal(k, hour + 1)
        day = rng.normal(rng.salted(self._keys, 22), m // ev.MIN_PER_DAY)
        return daily * weekly * np.exp(0.06 * wob + 0.05 * day)

    def _release_levels(self, m0: int, m1: int, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cap = np.ones((len(self.tiers), len(m)))
        svc = np.ones_like(cap)
        for j, tier in enumerate(self.app.tiers):
            deps = self.deployments(tier, m0, m1)
            if deps:
                times = np.array([d.minute for d in deps])
                idx = np.searchsorted(times, m, side="right")  # 0: before every release in view
                # A release counts for 8 weeks at most, judged from each minute's own week, so
                # the level never depends on how far back the generated window reaches.
                week_of_release = np.r_[-(1 << 40), [ev.week_of(d.minute) for d in deps]][idx]
                idx = np.where(week_of_release >= (m + ev.WEEK_OFFSET_MIN) // ev.MIN_PER_WEEK - ev.DEPLOY_LOOKBACK_WEEKS, idx, 0)
                cap[j] = np.r_[1.0, [d.capacity_level for d in deps]][idx]
                svc[j] = np.r_[1.0, [d.service_level for d in deps]][idx]
        return cap, svc

    def _main(self, raw: np.ndarray, m: np.ndarray, years: np.ndarray) -> None:
        """The main server: every call passes its gateway and lands on one tier."""
        mp = self.main
        tiers = raw[:, 1:]
        calls = tiers[CALLS].sum(0)
        growth = np.exp(self._p["growth"] * years).mean(0)
        rho = calls / (self.main_capacity * growth)
        overhead = mp.overhead_ms / np.maximum(1 - rho, 0.1) * np.exp(0.03 * rng.normal(rng.salted(mp.key, 12), m))
        raw[CALLS, 0] = calls
        raw[ART_SUM, 0] = tiers[ART_SUM].sum(0) + np.rint(calls * overhead).astype(np.int64)
        raw[ART_MIN, 0] = tiers[ART_MIN].min(0) + np.rint(overhead).astype(np.int64)
        raw[ART_MAX, 0] = tiers[ART_MAX].max(0) + np.rint(overhead).astype(np.int64)
        raw[ERRORS, 0] = tiers[ERRORS].sum(0) + rng.poisson(rng.salted(mp.key, 15), m, calls * mp.error_rate)
        for f in (EXCEPTIONS, SLOW, VERY_SLOW):
            raw[f, 0] = tiers[f].sum(0)

    def _present(self, m0: int, m1: int, m: np.ndarray) -> np.ndarray:
        n_s = len(self.tiers) + 1
        keys = np.array([self.main.key] + [t.key for t in self.tiers], dtype=np.uint64)[:, None]
        present = rng.uniform(rng.salted(keys, 31), m) >= self.app.minute_gap_rate
        for o in self.outages(m0, m1):
            inside = (m >= o.start_min) & (m < o.end_min)
            rows = range(n_s) if o.server_index < 0 else [o.server_index]
            for r in rows:
                present[r] &= ~inside
        return present.astype(np.int64)
