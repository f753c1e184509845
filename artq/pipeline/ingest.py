"""Pulling metrics into storage: incremental from the watermark, backfill in chunks, late data."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from artq.config import ApplicationSettings
from artq.errors import InputError
from artq.horizons import RECENT_HOURS
from artq.pipeline.runtime import Runtime, is_transient
from artq.storage import repository as repo
from artq.timeutil import HOUR, floor_hour, utcnow

if TYPE_CHECKING:
    from artq.sources.appdynamics import FetchResult

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
    _account(app.name, result, summary)
    summary.windows.append(f"{start.isoformat()}/{end.isoformat()}")


def _account(name: str, result: FetchResult, summary: IngestSummary) -> None:
    summary.requests += result.requests
    summary.implausible += len(result.rejected)
    for server, metric, hour, why in result.rejected:  # the first of each series, up to a few series
        named = {e.split(" ", 2)[:2] == [server, metric] for e in summary.implausible_examples}
        if True not in named and len(summary.implausible_examples) < IMPLAUSIBLE_EXAMPLES:
            summary.implausible_examples.append(f"{server} {metric} {hour:%Y-%m-%dT%H:%MZ}: {why}")
    if result.rejected:  # loud: a controller (or something in front of it) sent values that cannot be true
        logger.warning("%s: %d implausible value(s) from the source recorded as gaps, e.g. %s",
                       name, len(result.rejected), summary.implausible_examples[0])


def _windows(rt: Runtime, watermark: datetime | None, gaps: list[datetime],
             until: datetime) -> tuple[datetime, list[tuple[datetime, datetime, bool]]]:
    """The start of the new hours and the windows to ask for: ``(start, end, is_refetched_gap)``."""
    start = watermark + HOUR if watermark else until - timedelta(days=rt.settings.backfill_days)
    out = [(hour, hour + HOUR, True) for hour in gaps if hour < start]
    chunk = timedelta(hours=rt.settings.source.chunk_hours)
    t = start
    while t < until:
        end = min(t + chunk, until)
        out.append((t, end, False))
        t = end
    return start, out


def fetch_new_hours(rt: Runtime, app: ApplicationSettings, until: datetime) -> IngestSummary:
    """Bring ``app`` up to date: every complete hour before ``until`` since the watermark.

    With no data stored yet, the first fetch pulls ``backfill_days`` of history. Hours the source
    had no data for in the last two days are asked for again, in case they arrived late.
    """
    until = floor_hour(until)
    with rt.db.session() as s:
        watermark = repo.latest_observed_hour(s, app.name)
        gaps = repo.open_gap_hours(s, app.name, since=until - LATE_DATA_LOOKBACK)
    start, windows = _windows(rt, watermark, gaps, until)
    summary = IngestSummary(start=start, end=until)
    for a, b, refetch in windows:
        _ingest_window(rt, app, a, b, summary)
        summary.refetched_gap_hours += refetch
    return summary


def fetch_batch(rt: Runtime, apps: list[ApplicationSettings], until: datetime,
                threads: int = 8) -> dict[str, tuple[IngestSummary | Exception, float]]:
    """:func:`fetch_new_hours` for a batch of applications: ``{name: (summary or the error, seconds)}``.

    The same windows and the same rows, three round trips instead of five per application: one
    read of the watermarks and open gaps, the controller's requests overlapped in ``threads``
    (I/O), and one transaction storing every application's values (a commit per application,
    each an fsync on MariaDB, was most of the fetch step). If that transaction fails for a
    reason that is not transient, each application is stored on its own, so one application's
    bad rows fail that application only. A transient failure propagates (the step retries).
    """
    until = floor_hour(until)
    names = [a.name for a in apps]
    with rt.db.session() as s:
        watermarks = repo.latest_observed_hours(s, names)
        gaps = repo.open_gap_hours_many(s, names, since=until - LATE_DATA_LOOKBACK)

    def pull(app: ApplicationSettings):
        began = time.perf_counter()
        try:
            start, windows = _windows(rt, watermarks.get(app.name), gaps.get(app.name, []), until)
            results = [(a, b, refetch, rt.client.fetch_hours(app.name, app.tiers, a, b, metrics=app.metrics))
                       for a, b, refetch in windows]
            return start, results, time.perf_counter() - began
        except Exception as exc:  # noqa: BLE001 - the caller sorts transient from the rest
            return None, exc, time.perf_counter() - began

    with ThreadPoolExecutor(max(1, min(threads, len(apps)))) as pool:
        pulled = dict(zip(names, pool.map(pull, apps), strict=True))
    out: dict[str, tuple[IngestSummary | Exception, float]] = {
        n: (r, t) for n, (_, r, t) in pulled.items() if isinstance(r, Exception)}
    fetched = {n: p for n, p in pulled.items() if n not in out}
    began = time.perf_counter()
    try:
        with rt.db.session() as s:
            read_committed(s)
            repo.store_observations_many(
                s, {n: [v for *_, r in res for v in r.values] for n, (_, res, _) in fetched.items()},
                {n: [m for *_, r in res for m in r.missing] for n, (_, res, _) in fetched.items()})
        stored = {n: None for n in fetched}
    except Exception as exc:
        if is_transient(exc):
            raise
        logger.warning("storing the fetch of %d applications at once failed (%s); storing them one by one",
                       len(fetched), exc)
        stored = {n: _store_one(rt, n, res) for n, (_, res, _) in fetched.items()}
    share = (time.perf_counter() - began) / max(1, len(fetched))  # the batch's store, shared evenly
    for name, (start, results, elapsed) in fetched.items():
        if stored[name] is not None:
            out[name] = (stored[name], elapsed + share)
            continue
        summary = IngestSummary(start=start, end=until)
        for a, b, refetch, result in results:
            summary.stored += sum(1 for v in result.values if v.value is not None and np.isfinite(v.value))
            summary.missing += len(result.missing)
            summary.refetched_gap_hours += refetch
            _account(name, result, summary)
            summary.windows.append(f"{a.isoformat()}/{b.isoformat()}")
        out[name] = (summary, elapsed + share)
    return {n: out[n] for n in names}


def _store_one(rt: Runtime, name: str, results: list) -> Exception | None:
    try:
        with rt.db.session() as s:
            repo.store_observations_many(s, {name: [v for *_, r in results for v in r.values]},
                                         {name: [m for *_, r in results for m in r.missing]})
        return None
    except Exception as exc:  # noqa: BLE001 - transient ones still stop the step
        if is_transient(exc):
            raise
        return exc


def read_committed(session) -> None:
    """READ COMMITTED for this transaction on MariaDB: two workers write different applications'
    rows of the same tables at once, and REPEATABLE READ's gap locks made them wait on (and
    deadlock with) each other. Call before the transaction's first statement."""
    if session.get_bind().dialect.name in ("mysql", "mariadb"):
        session.connection(execution_options={"isolation_level": "READ COMMITTED"})


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
