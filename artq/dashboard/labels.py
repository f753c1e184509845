"""Display names of forecast drivers, the way an analyst names them.

The forecaster names a driver group after the feature column's server slug (``abpserver3 load``)
unless it was trained with the tiers' display names; the dashboard maps the slug back to the
configured tier name (``ABPServer3 load``) so analysts see the server as AppDynamics shows it.
The forecaster's generic groups get the words an analyst would use: ``calendar`` is the time of
day and weekday, ``ART history`` the main server's recent response time, ``main load`` the main
server's load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

GENERIC = {
    "calendar": "time of day and weekday",
    "ART history": "recent response time (main server)",
    "missing data": "gaps in the metric data",
}


def _slug(name: str) -> str:
    # the same slug rule as artq.catalog.series_name
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def driver_label(name: str, tiers: Iterable[str]) -> str:
    if name in GENERIC:
        return GENERIC[name]
    head, _, rest = name.partition(" ")
    if head == "main" and rest:
        return f"main server {rest}"
    for tier in tiers:
        if head == _slug(tier) or head.lower() == tier.lower():
            return f"{tier} {rest}".rstrip()
    return name


def label_drivers(drivers: Sequence[Sequence[Any]] | None, tiers: Iterable[str]) -> list[list[Any]]:
    tiers = list(tiers)
    return [[driver_label(str(d[0]), tiers), float(d[1])] for d in (drivers or [])]
