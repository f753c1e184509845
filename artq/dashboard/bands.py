"""Percentile bands of actual ART: the original project's "bullet chart", computed on the UTC hour grid.

Three periods, all ending at the forecast origin (never after it, so a band never uses an hour
the forecast could not have seen):

* ``7d``  - every hour of the last 7 days;
* ``30d`` - every hour of the last 30 days;
* ``hour_of_week`` - the same weekday and hour as the *target* hour over the last 26 weeks, so
  a Monday-09:00 forecast is judged against Monday mornings, not against Sunday nights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.catalog import MAIN, TARGET_METRIC
from artq.storage.models import Observation
from artq.timeutil import as_utc

PERCENTILES = (60, 75, 90, 99)
PERIODS = ("7d", "30d", "hour_of_week")
HOUR_OF_WEEK_WEEKS = 26
HISTORY_DAYS = HOUR_OF_WEEK_WEEKS * 7  # how much actual ART a refresh reads


@dataclass(frozen=True)
class Band:
    """Percentiles of actual ART over one period; ``None`` values when the period holds no hour."""

    period: str
    n_hours: int
    p60: float | None
    p75: float | None
    p90: float | None
    p99: float | None

    def get(self, name: str) -> float | None:
        return getattr(self, name)

    def position(self, value: float | None) -> str | None:
        """Where ``value`` sits: ``<p60``, ``p60-p75``, ``p75-p90``, ``p90-p99`` or ``>p99``."""
        if value is None or self.p60 is None:
            return None
        edges = [("p60", self.p60), ("p75", self.p75), ("p90", self.p90), ("p99", self.p99)]
        if value < edges[0][1]:
            return "<p60"
        for (lo, _), (hi, hv) in pairwise(edges):
            if value < hv:
                return f"{lo}-{hi}"
        return ">p99"


def band_of(period: str, values: Sequence[float]) -> Band:
    if not len(values):
        return Band(period, 0, None, None, None, None)
    q = np.percentile(np.asarray(values, dtype=float), PERCENTILES)  # linear interpolation
    return Band(period, len(values), *(round(float(v), 3) for v in q))


def load_actual_art(session: Session, application: str, start: datetime, end: datetime) -> dict[datetime, float]:
    """Hourly ART of the main server for hours in ``[start, end]``."""
    rows = session.execute(
        select(Observation.hour, Observation.value).where(
            Observation.application == application,
            Observation.server == MAIN,
            Observation.metric == TARGET_METRIC,
            Observation.hour >= start,
            Observation.hour <= end,
        )
    ).all()
    return {as_utc(h): float(v) for h, v in rows}


class BandSet:
    """The bands of every target hour of one origin: history is scanned once, not once per horizon."""

    def __init__(self, history: Mapping[datetime, float], origin: datetime):
        past = sorted((h, v) for h, v in history.items() if h <= origin)
        self._hours = [h for h, _ in past]
        self._values = np.array([v for _, v in past], dtype=float)
        age = np.array([(origin - h) / timedelta(hours=1) for h in self._hours], dtype=float)
        self._how = np.array([h.weekday() * 24 + h.hour for h in self._hours], dtype=int)
        self._recent_weeks = age < HOUR_OF_WEEK_WEEKS * 7 * 24
        self._fixed = {
            "7d": band_of("7d", self._values[age < 7 * 24]),
            "30d": band_of("30d", self._values[age < 30 * 24]),
        }

    def for_hour(self, hour: datetime) -> dict[str, Band]:
        same = self._recent_weeks & (self._how == hour.weekday() * 24 + hour.hour)
        return {**self._fixed, "hour_of_week": band_of("hour_of_week", self._values[same])}


def bands_for(history: Mapping[datetime, float], origin: datetime, hour: datetime) -> dict[str, Band]:
    """The three bands for a forecast of ``hour`` made at ``origin`` (history at or before origin only)."""
    return BandSet(history, origin).for_hour(hour)
