"""Many applications' forecasts for one horizon at once (the fleet cycle's predict step).

Same arithmetic as :meth:`ModelBundle.predict` — literally the same methods
(:meth:`ModelBundle.values`, :meth:`ModelBundle.bounds`, :meth:`ModelBundle.drivers`) — on
feature rows that the batch loader already built: ``X`` holds one row per application
(index = application name, columns = the bundle's ``feature_names_``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from artq.forecasting.intervals import covered
from artq.forecasting.model import ModelBundle

MAX_DRIVERS = 8


def predict_many(bundles: list[ModelBundle], X: pd.DataFrame, horizon: int,
                 recent: list[np.ndarray | None] | None = None, drivers: bool = True) -> list[dict[str, Any]]:
    """:meth:`ModelBundle.predict` for many applications, each with its own model, same arithmetic.

    ``X``: each application's row built by its bundle's :attr:`ModelBundle.builder` (the target
    in that model's units).

    ``recent[i]``, when given, holds application ``i``'s recent out-of-sample forecasts of this
    horizon in original units, oldest first, as rows (actual, forecast, and the three naive
    forecasts of the same hour, the stored lower and upper bound): the stored forecasts of the
    last hours up to the origin (this model's for hours after its training window, earlier
    models' before). A naive forecast that clearly beat them takes half of this forecast
    (:meth:`ModelBundle.guarded`), their residuals slide into the conformal calibration window
    (:meth:`ConformalInterval.bounds_with`), and how often their intervals covered sets this
    interval's level (:meth:`ModelBundle.adapted_coverage`), as in
    :meth:`ModelBundle.predict_frame` with ``past``.

    Each row goes to its own boosters through ``inplace_predict`` (no DMatrix); the drivers come
    from one small NumPy DMatrix per application (``pred_contribs`` has no in-place form) and
    cost about as much as the rest: ``drivers=False`` leaves them empty, for a caller that
    computes them on demand (:meth:`ModelBundle.drivers` on the same row).
    ``tests/workers/test_fleet.py`` checks the results against the single cycle.
    """
    arr = X.to_numpy(dtype=float)
    out: list[dict[str, Any]] = []
    for i, bundle in enumerate(bundles):
        row = arr[i : i + 1]
        value = float(bundle.values(row, horizon)[0])
        past = _rows(None if recent is None else recent[i])
        value = bundle.guarded(value, row[0], horizon, past[:, 0], past[:, 1], past[:, 2:5])
        residuals = bundle.residuals(past[:, 0], past[:, 1])
        lower, upper = bundle.bounds(value, horizon, residuals[np.isfinite(residuals)], row[0],
                                     covered(past[:, 0], past[:, 5], past[:, 6]))
        found = bundle.drivers(row[0], horizon, value, top=MAX_DRIVERS) if drivers else []
        out.append({"application": X.index[i], "value": value, "lower": lower, "upper": upper,
                    "coverage": float(bundle.coverage), "drivers": [[g, float(c)] for g, c in found]})
    return out


RECENT_COLUMNS = 7  # actual, forecast, the three naive forecasts, lower, upper


def _rows(recent: np.ndarray | None) -> np.ndarray:
    """``recent`` as rows (actual, forecast, last value, same hour yesterday, same hour last week,
    lower, upper); shorter rows get NaN for what they lack (the guardrail, or the adaptive
    coverage, then has nothing to go on)."""
    if recent is None or len(recent) == 0:
        return np.empty((0, RECENT_COLUMNS))
    r = np.asarray(recent, dtype=float)
    r = r.reshape(len(r), -1)
    return np.hstack([r, np.full((len(r), RECENT_COLUMNS - r.shape[1]), np.nan)]) if r.shape[1] < RECENT_COLUMNS else r

