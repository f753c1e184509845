"""What a live cycle stored, in the form the backtest arithmetic takes (shared by the tests that
compare the two)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from artq.horizons import HORIZONS
from artq.pipeline import Runtime
from artq.storage import repository as repo
from artq.timeutil import HOUR


def stored_cycle(rt: Runtime, app: str, t0: datetime, hours_before: int = 24):
    """``(live, earlier, frame)``: the forecasts stored for ``t0`` per horizon; per horizon, the
    values stored for the ``hours_before`` origins before it (``predict_frame``'s ``past``); the
    stored history up to ``t0``."""
    with rt.db.session() as s:
        live = {f.horizon: f for f in repo.forecasts_for(s, app, t0)}
        earlier = {h: pd.Series({pd.Timestamp(f.origin): f.value
                                 for k in range(1, hours_before + 1) for f in repo.forecasts_for(s, app, t0 - k * HOUR)
                                 if f.horizon == h}) for h in HORIZONS}
        frame = repo.load_frame(s, app, t0 - 400 * HOUR, t0)
    return live, earlier, frame
