"""Event schedules of the simulated world: incidents, deployments, traffic surges, outages.

Each schedule is drawn per calendar block (week or day) from its own RNG keyed by
(seed, app, kind, block), so an event never depends on which window was asked for. Effects are
evaluated on vectors of minute indices (minutes since the epoch).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import numpy as np

from artq.sources.simulator.rng import stable_key

MIN_PER_DAY = 1440
MIN_PER_WEEK = 7 * MIN_PER_DAY
WEEK_OFFSET_MIN = 3 * MIN_PER_DAY  # the epoch was a Thursday; weeks start on Monday 00:00 UTC
DEPLOY_LOOKBACK_WEEKS = 8


def week_of(minute: int) -> int:
    return (minute + WEEK_OFFSET_MIN) // MIN_PER_WEEK


def week_start(week: int) -> int:
    return week * MIN_PER_WEEK - WEEK_OFFSET_MIN


def _rng(key: int, kind: int, block: int) -> np.random.Generator:
    words = [key & 0xFFFFFFFF, key >> 32, kind, block + (1 << 30)]
    return np.random.Generator(np.random.Philox(np.random.SeedSequence(words)))


def _dt(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * 60, UTC)


@dataclass(frozen=True)
class Incident:
    """A sub-server losing capacity for hours: slower, erroring, and felt by the main server."""

    tier: str
    start_min: int
    end_min: int
    capacity_factor: float  # capacity multiplier at the worst point (0.3..0.7)
    service_factor: float  # service-time multiplier at the worst point
    error_rate: float  # extra share of calls failing at the worst point

    @property
    def start(self) -> datetime:
        return _dt(self.start_min)

    @property
    def end(self) -> datetime:
        return _dt(self.end_min)

    def profile(self, minutes: np.ndarray) -> np.ndarray:
        """0 outside, ramping to 1 over 15 min, back to 0 over the last 30 min."""
        up = (minutes - self.start_min) / 15.0
        down = (self.end_min - minutes) / 30.0
        return np.clip(np.minimum(up, down), 0.0, 1.0)


@dataclass(frozen=True)
class Deployment:
    tier: str
    minute: int
    capacity_level: float  # capacity multiplier from this release on (a regression is < 0.85)
    service_level: float  # service-time multiplier from this release on

    @property
    def at(self) -> datetime:
        return _dt(self.minute)


@dataclass(frozen=True)
class Surge:
    start_min: int
    end_min: int
    amplitude: float  # extra load at the peak, as a share of normal load
    weights: tuple[float, ...]  # per tier: how much of the surge reaches it

    def bump(self, minutes: np.ndarray) -> np.ndarray:
        x = (minutes - self.start_min) / max(self.end_min - self.start_min, 1)
        inside = (x >= 0) & (x < 1)
        return np.where(inside, 0.5 * (1 - np.cos(2 * np.pi * x)), 0.0)


@dataclass(frozen=True)
class Outage:
    """Whole hours in which a server (or the whole application, ``server_index`` -1) sends nothing."""

    server_index: int  # index into [main] + tiers, or -1 for every server
    start_min: int
    end_min: int


KIND_INCIDENT, KIND_DEPLOY, KIND_SURGE, KIND_OUTAGE = 1, 2, 3, 4


@lru_cache(maxsize=65536)
def incidents_of_week(key: int, week: int, tiers: tuple[str, ...], rate: float) -> tuple[Incident, ...]:
    rng = _rng(key, KIND_INCIDENT, week)
    n = rng.poisson(rate) if rate > 0 else 0
    out = []
    for _ in range(n):
        start = week_start(week) + int(rng.integers(0, MIN_PER_WEEK))
        duration = int(np.clip(rng.lognormal(np.log(180), 0.5), 60, 600))
        out.append(
            Incident(
                tier=tiers[int(rng.integers(len(tiers)))],
                start_min=start,
                end_min=start + duration,
                capacity_factor=float(rng.uniform(0.3, 0.65)),
                service_factor=float(rng.uniform(1.1, 1.6)),
                error_rate=float(rng.uniform(0.01, 0.06)),
            )
        )
    return tuple(out)


@lru_cache(maxsize=65536)
def deployments_of_week(key: int, week: int, tier: str, rate: float) -> tuple[Deployment, ...]:
    rng = _rng(stable_key(key, tier), KIND_DEPLOY, week)  # each tier releases on its own schedule
    n = rng.poisson(rate) if rate > 0 else 0
    out = []
    for _ in range(n):
        day = int(rng.integers(1, 4))  # Tuesday..Thursday, office hours: when releases go out
        minute = week_start(week) + day * MIN_PER_DAY + int(rng.integers(8 * 60, 17 * 60))
        regression = rng.random() < 0.12
        cap = float(rng.uniform(0.75, 0.9)) if regression else float(np.exp(rng.normal(0.02, 0.06)))
        out.append(Deployment(tier, minute, cap, float(np.exp(rng.normal(0.0, 0.05)))))
    return tuple(sorted(out, key=lambda d: d.minute))


@lru_cache(maxsize=65536)
def surges_of_day(key: int, day: int, n_tiers: int, rate: float) -> tuple[Surge, ...]:
    rng = _rng(key, KIND_SURGE, day)
    n = rng.poisson(rate) if rate > 0 else 0
    out = []
    for _ in range(n):
        start = day * MIN_PER_DAY + int(rng.integers(6 * 60, 22 * 60))  # campaigns hit in the day
        duration = int(rng.integers(60, 240))
        weights = tuple(float(w) for w in rng.uniform(0.2, 1.0, n_tiers))
        out.append(Surge(start, start + duration, float(rng.uniform(0.25, 0.8)), weights))
    return tuple(out)


@lru_cache(maxsize=65536)
def outages_of_week(key: int, week: int, n_tiers: int, rate: float) -> tuple[Outage, ...]:
    rng = _rng(key, KIND_OUTAGE, week)
    n = rng.poisson(rate) if rate > 0 else 0
    out = []
    for _ in range(n):
        hour = int(rng.integers(0, 7 * 24))
        start = week_start(week) + hour * 60
        scope = -1 if rng.random() < 0.5 else int(rng.integers(0, n_tiers + 1))
        out.append(Outage(scope, start, start + 60 * int(rng.integers(1, 4))))
    return tuple(out)


def weeks_covering(m0: int, m1: int, back: int = 1) -> range:
    """Weeks whose events may touch minutes [m0, m1): events last < a week, so one back is enough."""
    return range(week_of(m0) - back, week_of(max(m1 - 1, m0)) + 1)
