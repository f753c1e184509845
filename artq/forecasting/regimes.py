"""Where the current level regime of a series starts: the most recent sustained level shift.

A service moved to other hardware, a cache that stopped working, a CPU that became saturated: the
level halves or doubles and stays there. Folds of the regime before it judge candidates on
behaviour that no longer holds (bench/forecast: the models of ``cpu_ac20cd`` and
``network_in_257a54`` learned the moves of the old regime, and its folds outvoted the one fold of
the new one), so model selection scores only rows of the current regime, and models wait until
it is ``YOUNG_HOURS`` old (:func:`artq.forecasting.tuning.select`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SHIFT = float(np.log(2))  # a new level at least twice, or at most half, the one before (log scale)
MIN_AFTER = 6  # hours of the new level before it counts (bench/forecast: `cpu_ac20cd` is caught 9 h in)
BEFORE = 168  # the level before a shift: the median of up to a week before it
MIN_BEFORE = 24
CONSISTENT = 0.8  # share of hours on each side nearer their own side's level than the other's
# Until the new regime is a week old, the forecast is a naive one judged on its hours: the models'
# lagged inputs and weekly bases reach a week back, into the old regime (bench/forecast: the models of
# `network_in_257a54`, trained 4-7 days after its level fell to a third, forecast a further fall;
# 96 to 336 hours gave the same on the 32 series).
YOUNG_HOURS = 168
CHUNK = 256


def regime_start(z: np.ndarray) -> int:
    """The position in ``z`` (a series on the log scale, in time order; NaN allowed) where its
    current level regime starts: the position of the most recent sustained level shift, else 0.

    A shift at ``t``: the median of ``z[t:]`` lies at least ``SHIFT`` from the median of the week
    before ``t``, and at least ``CONSISTENT`` of the hours on each side lie on their own side of
    the midpoint between the two (one extreme hour, or a daily cycle, is not a shift). Of the
    positions that qualify, the one that puts the most hours on their own side: the medians
    differ as much a few hours before or after the shift, the hours do not."""
    values = np.asarray(z, dtype=float)
    s = pd.Series(values)
    n = len(s)
    if n < MIN_BEFORE + MIN_AFTER or s.notna().sum() < MIN_BEFORE + MIN_AFTER:
        return 0
    before = s.rolling(BEFORE, min_periods=MIN_BEFORE).median().shift(1).to_numpy()
    after = s[::-1].expanding(min_periods=MIN_AFTER).median()[::-1].to_numpy()
    with np.errstate(invalid="ignore"):
        candidates = np.flatnonzero(np.abs(after - before) >= SHIFT)
    if len(candidates) == 0:
        return 0
    # Counted per block of candidates: one (candidates x hours) matrix of a year of a bursty
    # series, where most hours qualify, would take hundreds of MB.
    scores = np.concatenate([_score(values, before, after, part) for part in np.array_split(
        candidates, -(-len(candidates) // CHUNK))])
    if scores.max() < 0:
        return 0
    return int(candidates[np.flatnonzero(scores == scores.max())[-1]])


def _score(values: np.ndarray, before: np.ndarray, after: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Per candidate position: the hours on their own side of the midpoint (the week before and
    all after), or -1 where either side is not ``CONSISTENT`` or fewer than ``MIN_AFTER`` after."""
    n = len(values)
    up = after[candidates] > before[candidates]
    mid = (after[candidates] + before[candidates]) / 2
    pos = np.arange(n)
    with np.errstate(invalid="ignore"):
        high = values[None, :] > mid[:, None]  # per candidate and hour: above the midpoint
        low = values[None, :] < mid[:, None]
    new_side = np.where(up[:, None], high, low)
    old_side = np.where(up[:, None], low, high)
    known = np.isfinite(values)[None, :]
    in_after = pos[None, :] >= candidates[:, None]
    in_before = (pos[None, :] < candidates[:, None]) & (pos[None, :] >= candidates[:, None] - BEFORE)
    right_after = (new_side & in_after).sum(axis=1)
    right_before = (old_side & in_before).sum(axis=1)
    n_after = (known & in_after).sum(axis=1)
    n_before = (known & in_before).sum(axis=1)
    ok = (right_after >= CONSISTENT * n_after) & (right_before >= CONSISTENT * n_before) & (n_after >= MIN_AFTER)
    return np.where(ok, right_after + right_before, -1)
