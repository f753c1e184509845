"""Pulling metrics into storage: incremental from the watermark, backfill in chunks, late data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from artq.config import ApplicationSettings
from artq.errors import InputError
from artq.horizons import RECENT_HOURS
from artq.pipeline.runtime import Runtime
from artq.storage import repository as repo
from artq.timeutil import HOUR, floor_hour, utcnow

logger = logging.getLogger(__name__)

LATE_DATA_LOOKBACK = timedelta(hours=RECENT_HOURS)  # gaps younger than this are asked for again
IMPLAUSIBLE_EXAMPLES = 10  # series whose first rejected value a summary names; the rest are counted


@dataclass
class IngestSummary:
    start: datetime | None = None
    end: datetime | None = None
    stored: int = 0
    missing: int = 0
    requests: int = 0
    refetched_gap_hours: int = 0
    implausible: int = 0  # values refused by the plausibility checks (recorded as gaps, never stored)
    implausible_examples: list[str] = field(default_factory=list)
    windows: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "stored": self.stored,
            "missing": self.missing,
            "requests": self.requests,
            "refetched_gap_hours": self.refetched_gap_hours,
            "implausible": self.implausible,
            "implausible_examples": list(self.implausible_examples),
        }


def _ingest_window(rt: Runtime, app: ApplicationSettings, start: datetime, end: datetime, summary: IngestSummary) -> None:
    """Fetch ``[start, end)`` and store it in one transaction: all of the window or none of it."""
    result = rt.client.fetch_hours(app.name, app.tiers, start, end, metrics=app.metrics)
    with rt.db.session() as s:
        summary.stored += repo.store_observations(s, app.name, result.values)
        summary.missing += repo.record_gaps(s, app.name, result.missing)
    summary.requests += result.requests
    summary.implausible += len(result.rejected)
    for server, metric, hour, why in result.rejected:  # the first of each series, up to a few series
        named = {e.split(" ", 2)[:2] == [server, metric] for e in summary.implausible_examples}
        if True not in named and len(summary.implausible_examples) < IMPLAUSIBLE_EXAMPLES:
            summary.implausible_examples.append(f"{server} {metric} {hour:%Y-%m-%dT%H:%MZ}: {why}")
    if result.rejected:  # loud: a controller (or something in front of it) sent values that cannot be true
        logger.warning("%s: %d implausible value(s) from the source recorded as gaps, e.g. %s",
                       app.name, len(result.rejected), summary.implausible_examples[0])
    summary.windows.append(f"{start.isoformat()}/{end.isoformat()}")


def fetch_new_hours(rt: Runtime, app: ApplicationSettings, until: datetime) -> IngestSummary:
    """Bring ``app`` up to date: every complete hour before ``until`` since the watermark.

    With no data stored yet, the first fetch pulls ``backfill_days`` of history. Hours the source
    had no data for in the last two days are asked for again, in case they arrived late.
    """
    until = floor_hour(until)
    with rt.db.session() as s:
        watermark = repo.latest_observed_hour(s, app.name)
        gaps = repo.open_gap_hours(s, app.name, since=until - LATE_DATA_LOOKBACK)
    start = watermark + HOUR if watermark else until - timedelta(days=rt.settings.backfill_days)
    summary = IngestSummary(start=start, end=until)
    for hour in (g for g in gaps if g < start):
        _ingest_window(rt, app, hour, hour + HOUR, summary)
        summary.refetched_gap_hours += 1
    chunk = timedelta(hours=rt.settings.source.chunk_hours)
    t = start
    while t < until:
        end = min(t + chunk, until)
        _ingest_window(rt, app, t, end, summary)
        t = end
    return summary


def backfill(
    rt: Runtime,
    app: ApplicationSettings,
    start: datetime,
    end: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Fetch ``[start, end)`` in chunks, each stored on its own; re-fetching replaces values."""
    start, end = floor_hour(start), floor_hour(end)
    if end <= start:
        raise InputError(f"`--end` must be after `--start`. Got start {start.isoformat()}, end {end.isoformat()}.")
    if end > floor_hour(utcnow()):
        end = floor_hour(utcnow())  # the current hour is not complete yet
    chunk = timedelta(hours=rt.settings.source.chunk_hours)
    total = int((end - start) / HOUR)
    summary = IngestSummary(start=start, end=end)
    t = start
    while t < end:
        stop = min(t + chunk, end)
        _ingest_window(rt, app, t, stop, summary)
        t = stop
        if progress:
            progress(int((t - start) / HOUR), total)
    return summary
