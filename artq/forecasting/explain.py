"""Group XGBoost feature contributions (``pred_contribs``) into readable drivers.

A feature belongs to the series it was computed from; a series is named by its server and
metric kind: ``("ABPServer3 load", +41.2)``, ``("ART history", -3.0)``, ``("calendar", +5.1)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from artq.forecasting.features import KIND_LABELS, split_column

CALENDAR = {"origin_hour", "target_hour", "target_weekday"}


def feature_group(feature: str, target: str, exog: Sequence[str], tier_names: Mapping[str, str]) -> str:
    """The driver group of one feature name."""
    if feature in CALENDAR:
        return "calendar"
    if feature == "exog_missing_0" or feature.startswith(f"{target}_missing_"):
        return "missing data"
    if feature.startswith("err_rate"):
        server = re.sub(r"_(lag_\d+|roll_mean_\d+)$", "", feature[len("err_rate") :]).lstrip("_")
        return f"{_server_label(server, tier_names)} errors"
    for col in sorted(exog, key=len, reverse=True):
        if feature.startswith(col + "_"):
            kind, server = split_column(col)
            if kind == "exog":
                return col
            return f"{_server_label(server, tier_names)} {KIND_LABELS.get(kind, kind)}"
    label = "ART" if target == "art" else target
    return f"{label} history"


def _server_label(slug: str, tier_names: Mapping[str, str]) -> str:
    return "main" if not slug else tier_names.get(slug, slug)


def group_contributions(contribs: np.ndarray, groups: Sequence[str], unit_scale: float,
                        top: int = 5) -> list[tuple[str, float]]:
    """Sum one row of contributions (bias excluded) per group; largest magnitude first."""
    totals: dict[str, float] = {}
    for g, c in zip(groups, contribs[: len(groups)], strict=True):
        totals[g] = totals.get(g, 0.0) + float(c)
    ranked = sorted(totals.items(), key=lambda kv: abs(kv[1]), reverse=True)[:top]
    return [(g, round(v * unit_scale, 3)) for g, v in ranked]
