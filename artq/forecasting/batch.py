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

from artq.forecasting.model import ModelBundle

MAX_DRIVERS = 8


def predict_many(bundles: list[ModelBundle], X: pd.DataFrame, horizon: int,
                 recent: list[np.ndarray | None] | None = None) -> list[dict[str, Any]]:
    """:meth:`ModelBundle.predict` for many applications, each with its own model, same arithmetic.

    ``X``: each application's row built by its bundle's :attr:`ModelBundle.builder` (the target
    in that model's units).

    ``recent[i]``, when given, holds application ``i``'s recent out-of-sample (actual, forecast)
    pairs of this horizon in original units, oldest first: the stored forecasts of the last
    hours up to the origin (this model's for hours after its training window, earlier models'
    before). Their residuals slide into the conformal calibration window
    (:meth:`ConformalInterval.bounds_with`), as in :meth:`ModelBundle.predict_frame` with ``past``.

    Each row goes to its own boosters through ``inplace_predict`` (no DMatrix); the drivers come
    from one small NumPy DMatrix per application (``pred_contribs`` has no in-place form).
    ``tests/workers/test_fleet.py`` checks the results against the single cycle.
    """
    arr = X.to_numpy(dtype=float)
    out: list[dict[str, Any]] = []
    for i, bundle in enumerate(bundles):
        row = arr[i : i + 1]
        value = float(bundle.values(row, horizon)[0])
        lower, upper = bundle.bounds(value, horizon, recent_residuals(bundle, None if recent is None else recent[i]), row[0])
        drivers = bundle.drivers(row[0], horizon, value, top=MAX_DRIVERS)
        out.append({"application": X.index[i], "value": value, "lower": lower, "upper": upper,
                    "coverage": float(bundle.coverage), "drivers": [[g, float(c)] for g, c in drivers]})
    return out


def recent_residuals(bundle: ModelBundle, pairs: np.ndarray | None) -> np.ndarray:
    """Residuals ``s(actual) - s(forecast)`` in the models' scale, finite ones only, oldest first."""
    if pairs is None or len(pairs) == 0:
        return np.empty(0)
    p = np.asarray(pairs, dtype=float).reshape(-1, 2)
    r = bundle.residuals(p[:, 0], p[:, 1])
    return r[np.isfinite(r)]
