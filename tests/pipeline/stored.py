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
    values and bounds stored for the ``hours_before`` origins before it (``predict_frame``'s
    ``past``); the stored history up to ``t0``."""
    with rt.db.session() as s:
        live = {f.horizon: f for f in repo.forecasts_for(s, app, t0)}
        rows = [f for k in range(1, hours_before + 1) for f in repo.forecasts_for(s, app, t0 - k * HOUR)]
        earlier = {h: pd.DataFrame([(f.value, f.lower, f.upper) for f in rows if f.horizon == h],
                                   index=pd.DatetimeIndex([pd.Timestamp(f.origin) for f in rows if f.horizon == h]),
                                   columns=["value", "lower", "upper"], dtype=float) for h in HORIZONS}
        frame = repo.load_frame(s, app, t0 - 400 * HOUR, t0)
    return live, earlier, frame
