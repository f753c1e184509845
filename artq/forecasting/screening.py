"""Screening of the input series before model selection: only inputs that can earn their place.

Dropped, in this order, each with its reason: inputs never observed in the training window,
mostly missing (over half the hours), constant, near-duplicates of an input already kept
(|correlation| > 0.98), and inputs whose recent movements say nothing about the target's next
hours: the largest rank correlation between the input's change (last hour; deviation from its
24-hour median) and the target's change from now to ``t0 + 1`` and ``t0 + 6`` (log scale) must
clear ``max(0.1, 4 / sqrt(n))`` — four standard errors of a correlation of pure noise, so a
noise input passes about once in ten thousand tries. At most ``MAX_INPUTS`` of the strongest
are kept. Model selection then keeps them only if a model with them wins across the folds
(:func:`artq.forecasting.tuning.select`).

Reads only rows of the training window; every statistic pairs an origin's past with its own
future target inside that window, never beyond it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from artq.forecasting.features import slog

MAX_INPUTS = 10
MAX_MISSING = 0.5
DUPLICATE_CORR = 0.98
SCREEN_ROWS = 24 * 56


def screen_inputs(window: pd.DataFrame, target: str, inputs: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(kept inputs, {dropped input: reason})`` for the training ``window`` (hourly frame)."""
    w = window.iloc[-SCREEN_ROWS:]
    dropped: dict[str, str] = {}
    candidates = []
    for c in inputs:
        x = w[c].astype(float)
        seen = x.notna()
        if not seen.any():
            dropped[c] = "never observed"
        elif 1 - seen.mean() > MAX_MISSING:
            dropped[c] = f"missing in {1 - seen.mean():.0%} of hours"
        elif x.nunique(dropna=True) <= 1:
            dropped[c] = "constant"
        else:
            candidates.append(c)
    if not candidates:
        return [], dropped
    logged = pd.DataFrame({c: slog(w[c].to_numpy(dtype=float)) for c in candidates}, index=w.index)
    corr = logged.corr(min_periods=24).abs().to_numpy()
    unique = []
    for i, c in enumerate(candidates):
        twin = next((candidates[j] for j in unique if corr[i, j] > DUPLICATE_CORR), None)
        if twin is not None:
            dropped[c] = f"near-duplicate of {twin}"
        else:
            unique.append(i)
    kept_cols = [candidates[i] for i in unique]
    y = pd.Series(slog(w[target].to_numpy(dtype=float)), index=w.index)
    anchor = y.ffill(limit=24)
    future = {h: (y.shift(-h) - anchor).rank() for h in (1, 6)}
    scores = {}
    for c in kept_cols:
        x = logged[c]
        moves = [(x - x.ffill(limit=1).shift(1)).rank(), (x - x.rolling(24, min_periods=6).median()).rank()]
        rhos = [abs(m.corr(f)) for m in moves for f in future.values()]
        rhos = [r for r in rhos if np.isfinite(r)]
        scores[c] = max(rhos, default=0.0)
    n = int(y.notna().sum())
    bar = max(0.1, 4 / np.sqrt(max(n, 1)))
    ranked = sorted(kept_cols, key=lambda c: -scores[c])
    kept = []
    for c in ranked:
        if scores[c] < bar:
            dropped[c] = f"no relation to the target's next hours (|rank corr| {scores[c]:.2f} < {bar:.2f})"
        elif len(kept) >= MAX_INPUTS:
            dropped[c] = f"weaker than the {MAX_INPUTS} inputs kept (|rank corr| {scores[c]:.2f})"
        else:
            kept.append(c)
    return [c for c in inputs if c in kept], dropped
