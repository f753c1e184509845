"""The metrics artq reads, and how they are named on the wire, in storage and in features.

A *server* is either the application itself (the main server, ``MAIN``: AppDynamics'
application-level "Overall Application Performance") or one of its tiers (the sub-servers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

MAIN = "main"
"""Server key of the application-level (main server) series in storage and features."""

OVERALL = "Overall Application Performance"

DEFAULT_TIERS: tuple[str, ...] = (
    "ABPServer1",
    "ABPServer2",
    "ABPServer3",
    "ABPServer4",
    "ABPServer5",
    "ABPServer6",
    "CollectionServer",
)


class Rollup(str, Enum):
    """How a metric's per-minute values combine into an hour."""

    AVERAGE = "average"  # weighted by `count` (ART): hour = sum / count
    PER_MINUTE = "per_minute"  # counters (CPM, EPM): hour = sum / minutes covered


@dataclass(frozen=True)
class Metric:
    key: str  # short name used in storage and feature names
    leaf: str  # AppDynamics metric leaf name
    rollup: Rollup


METRICS: tuple[Metric, ...] = (
    Metric("art", "Average Response Time (ms)", Rollup.AVERAGE),
    Metric("cpm", "Calls per Minute", Rollup.PER_MINUTE),
    Metric("epm", "Errors per Minute", Rollup.PER_MINUTE),
    Metric("exceptions", "Exceptions per Minute", Rollup.PER_MINUTE),
    Metric("slow", "Number of Slow Calls", Rollup.PER_MINUTE),
    Metric("very_slow", "Number of Very Slow Calls", Rollup.PER_MINUTE),
)
METRICS_BY_KEY = {m.key: m for m in METRICS}
METRICS_BY_LEAF = {m.leaf: m for m in METRICS}

TARGET_METRIC = "art"


def metric_path(metric: Metric, server: str) -> str:
    """The AppDynamics metric path of ``metric`` on ``server`` (``MAIN`` or a tier name)."""
    if server == MAIN:
        return f"{OVERALL}|{metric.leaf}"
    return f"{OVERALL}|{server}|{metric.leaf}"


def tier_wildcard_path(metric: Metric) -> str:
    """One path that matches ``metric`` on every tier (a whole-segment ``*``)."""
    return f"{OVERALL}|*|{metric.leaf}"


def parse_metric_path(path: str) -> tuple[str, Metric] | None:
    """Inverse of :func:`metric_path`: ``(server, metric)``, or None for a path artq does not read."""
    parts = path.split("|")
    if len(parts) == 2 and parts[0] == OVERALL and parts[1] in METRICS_BY_LEAF:
        return MAIN, METRICS_BY_LEAF[parts[1]]
    if len(parts) == 3 and parts[0] == OVERALL and parts[2] in METRICS_BY_LEAF:
        return parts[1], METRICS_BY_LEAF[parts[2]]
    return None


def server_slug(server: str) -> str:
    """The part of a column name that names a tier: ``ABPServer3`` → ``abpserver3``."""
    return re.sub(r"[^0-9a-z]+", "_", server.lower()).strip("_")


def series_name(metric_key: str, server: str) -> str:
    """Column name of one hourly series in the wide frame: ``art`` (main), ``cpm_abpserver3``."""
    if server == MAIN:
        return metric_key
    return f"{metric_key}_{server_slug(server)}"
