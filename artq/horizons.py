"""The forecast grid, defined once: horizons 1..6 hours ahead and the recent-hours window.

``RECENT_HOURS`` is the one "recent" window of the cycle: the forecasts of this many hours back
recalibrate the intervals (the sliding conformal window) and feed the drift check,
and the source is asked again for hours it had no data for up to this far back.
"""

from __future__ import annotations

N_HORIZONS = 6
HORIZONS = range(1, N_HORIZONS + 1)
RECENT_HOURS = 48


def check_horizon(horizon: object) -> int:
    """``horizon`` as an int in 1..6, or ValueError naming the rule and the value."""
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon not in HORIZONS:
        raise ValueError(f"`horizon` must be in 1..{N_HORIZONS}. Got {horizon!r}.")
    return horizon
