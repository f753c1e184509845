"""Feature rows of a batch of applications at one origin, built once per cycle in the fetch step.

Why here and not in each horizon task: one application's features cost ~200 pandas column
operations; built per application and horizon, a thousand applications do not fit in a minute
on two cores. Built once per batch they cost little more than one application's:

- two queries read the batch's history: the target's last :data:`TARGET_LOOKBACK_HOURS` hours
  and every other series' last :data:`EXOG_LOOKBACK_HOURS` (all that the features read);
- *one* call of the model's :class:`~artq.forecasting.features.FeatureBuilder` builds the rows of
  every application sharing a model layout: each application's hours sit in a block of 336 rows
  (two weeks, so hour-of-day and weekday stay true) and every feature reads at most 168 rows
  back, so no application ever sees another's data;
- the rows travel to the six horizon tasks as short vectors (a column equal in all six horizons
  is sent once), so a horizon task reads only the recent forecast errors from the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, literal_column, or_, select

from artq.catalog import MAIN, TARGET_METRIC, series_name
from artq.errors import ArtqError
from artq.forecasting.features import EXOG_LOOKBACK_HOURS, TARGET_LOOKBACK_HOURS, FeatureBuilder
from artq.horizons import HORIZONS, RECENT_HOURS
from artq.pipeline.runtime import Runtime
from artq.storage.models import Observation
from artq.timeutil import HOUR, as_utc

BLOCK_HOURS = 336  # rows per application in the stacked frame: a multiple of 168 keeps the calendar
HISTORY_CHUNK = 100  # applications per history query (see load_history)


def _offsets(session, columns: tuple, where: list, t0: datetime) -> list[tuple]:
    """Rows of ``columns`` whose last one is replaced by whole hours before ``t0``.

    Core rows, not ORM objects; on MariaDB the server computes the offset (a Python datetime
    per row cost more than the query itself).
    """
    *head, hour = columns
    mysql = session.get_bind().dialect.name in ("mysql", "mariadb")
    back = func.timestampdiff(literal_column("HOUR"), hour, t0.replace(tzinfo=None)) if mysql else hour
    rows = session.execute(select(*head, back).where(*where)).all()
    if mysql:
        return [tuple(r) for r in rows]
    t0n = as_utc(t0).replace(tzinfo=None)
    return [(*r[:-1], int((t0n - r[-1].replace(tzinfo=None)).total_seconds() // 3600)) for r in rows]


def load_history(rt: Runtime, applications: list[str], t0: datetime) -> dict[str, list[tuple]]:
    """``{application: [(server, metric, hours before t0, value), ...]}``: every hour the features read."""
    obs = Observation.__table__.c
    cols = (obs.application, obs.server, obs.metric, obs.value, obs.hour)
    per_app: dict[str, list[tuple]] = {}
    with rt.db.session() as s:
        # at most HISTORY_CHUNK names per query: from 200 values of an IN list on (MariaDB's
        # eq_range_index_dive_limit) the optimizer estimated the second read from statistics and
        # scanned every hour of every series of the batch (2.3x MariaDB CPU at a batch of 200)
        for i in range(0, len(applications), HISTORY_CHUNK):
            names = applications[i : i + HISTORY_CHUNK]
            target = _offsets(s, cols, [  # the unique key's index: (application, server, metric, hour)
                obs.application.in_(names), obs.server == MAIN, obs.metric == TARGET_METRIC,
                obs.hour >= t0 - TARGET_LOOKBACK_HOURS * HOUR, obs.hour <= t0], t0)
            recent = _offsets(s, cols, [  # (application, hour)
                obs.application.in_(names), obs.hour >= t0 - EXOG_LOOKBACK_HOURS * HOUR, obs.hour <= t0,
                or_(obs.server != MAIN, obs.metric != TARGET_METRIC)], t0)
            for app, server, metric, value, back in target + recent:
                per_app.setdefault(app, []).append((server, metric, back, value))
    return per_app


def build_rows(rt: Runtime, versions: dict[str, str], t0: datetime) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Encoded feature rows of every application in ``versions`` (its model version) at ``t0``.

    Returns (layouts, failed): per model layout the JSON-ready rows (:func:`encode`), and the
    applications that cannot be forecast with the reason (no value of the target at the origin).
    """
    bundles, failed = {}, {}
    for name, version in versions.items():
        try:
            bundles[name] = rt.bundle(name, version)
        except ArtqError as exc:  # tampered, incomplete or outdated files: this application only
            failed[name] = str(exc)
    history = load_history(rt, list(bundles), t0) if bundles else {}
    layouts: dict[tuple, list[str]] = {}
    for name, bundle in bundles.items():
        layouts.setdefault((bundle.target, tuple(bundle.exog)), []).append(name)
    out = []
    for (target, exog), names in layouts.items():
        have = [n for n in names if any(back == 0 and server == MAIN and metric == TARGET_METRIC and value is not None
                                        for server, metric, back, value in history.get(n, ()))]
        for n in names:
            if n not in have:
                failed[n] = (f"no `{target}` value stored for the origin {t0.isoformat()}: the source had no data "
                             "for that hour (see `source_gaps`), so there is nothing current to forecast from.")
        if not have:
            continue
        frame, origins = stacked_frame(have, history, t0, [target, *exog])
        # each block in its own model's units (ModelBundle.unit_), then one builder for all
        units = np.repeat([bundles[n].unit_ for n in have], BLOCK_HOURS)
        frame[target] = frame[target].to_numpy() * units
        X = FeatureBuilder(target, list(exog)).transform_at(frame, origins, list(HORIZONS))
        out.append(encode({h: X[h].set_axis(have, axis=0) for h in HORIZONS}))
    return out, failed


def stacked_frame(names: list[str], history: dict[str, list[tuple]], t0: datetime, columns: list[str]):
    """One wide frame holding each application's hours in its own 336-row block (see the module doc)."""
    n, col_index = len(names), {c: i for i, c in enumerate(columns)}
    data = np.full((n * BLOCK_HOURS, len(columns)), np.nan)
    column_of: dict[tuple[str, str], int | None] = {}
    for k, name in enumerate(names):
        end = k * BLOCK_HOURS + BLOCK_HOURS - 1  # the row of this application's origin
        for server, metric, back, value in history.get(name, ()):
            col = column_of.get((metric, server), -1)
            if col == -1:
                col = column_of[(metric, server)] = col_index.get(series_name(metric, server))
            if col is not None and 0 <= back < BLOCK_HOURS and value is not None:
                data[end - back, col] = value
    start = pd.Timestamp(t0) - pd.Timedelta(hours=n * BLOCK_HOURS - 1)
    index = pd.date_range(start, periods=n * BLOCK_HOURS, freq="h", name="hour")
    origins = index[BLOCK_HOURS - 1 :: BLOCK_HOURS]
    return pd.DataFrame(data, index=index, columns=columns), origins


def encode(X: dict[int, pd.DataFrame]) -> dict[str, Any]:
    """JSON-ready feature vectors of one layout: columns equal in all six horizons once, the rest per horizon."""
    first = X[1]
    varying = [c for c in first.columns if any(not X[h][c].equals(first[c]) for h in HORIZONS)]
    shared = [c for c in first.columns if c not in set(varying)]
    return {
        "applications": list(first.index), "shared": shared, "varying": varying,
        "shared_rows": _json_rows(first[shared]),
        "varying_rows": {str(h): _json_rows(X[h][varying]) for h in HORIZONS},
    }


def decode(layout: dict[str, Any], horizon: int) -> pd.DataFrame:
    shared = pd.DataFrame(layout["shared_rows"], columns=layout["shared"], index=layout["applications"], dtype=float)
    varying = pd.DataFrame(layout["varying_rows"][str(horizon)], columns=layout["varying"], index=layout["applications"],
                           dtype=float)
    return pd.concat([shared, varying], axis=1)


def _json_rows(frame: pd.DataFrame) -> list[list[float | None]]:
    values = frame.to_numpy(dtype=float)
    rows = values.astype(object)
    rows[~np.isfinite(values)] = None  # NaN -> null in JSON
    return rows.tolist()


# the naive forecasts of the window's hours read this far back: a week before the oldest target
# hour, and the last known value up to a week before the oldest origin
NAIVE_LOOKBACK_HOURS = RECENT_HOURS + max(HORIZONS) + TARGET_LOOKBACK_HOURS


def target_history(rt: Runtime, applications: list[str], t0: datetime, back: int) -> dict[str, np.ndarray]:
    """Per application, the target's values of the ``back + 1`` hours up to ``t0``, indexed by hours
    before ``t0`` (NaN where none is stored)."""
    obs = Observation.__table__.c
    out = {app: np.full(back + 1, np.nan) for app in applications}
    with rt.db.session() as s:
        for i in range(0, len(applications), HISTORY_CHUNK):
            rows = _offsets(s, (obs.application, obs.value, obs.hour), [
                obs.application.in_(applications[i : i + HISTORY_CHUNK]), obs.server == MAIN,
                obs.metric == TARGET_METRIC, obs.hour >= t0 - back * HOUR, obs.hour <= t0], t0)
            for app, value, k in rows:
                if value is not None and 0 <= k <= back:
                    out[app][k] = value
    return out


def naive_values(history: np.ndarray, back: int, horizon: int) -> tuple[float, float, float]:
    """The three naive forecasts (``ModelBundle.naive_forecasts``) made for the hour ``back`` hours
    before t0 from its origin ``horizon`` hours earlier: the last value known at the origin (within
    a week, as the features' anchor), the same hour a day and a week before."""
    origin = back + horizon
    known = np.flatnonzero(np.isfinite(history[origin : origin + TARGET_LOOKBACK_HOURS + 1]))
    last = float(history[origin + known[0]]) if len(known) else float("nan")
    at = lambda k: float(history[k]) if k < len(history) else float("nan")
    return last, at(back + 24), at(back + 168)


def recent_pairs(rt: Runtime, versions: dict[str, str], t0: datetime, horizon: int,
                 trained_until: dict[str, datetime]) -> dict[str, np.ndarray]:
    """Per application, its recent forecasts as rows (actual, forecast, the three naive forecasts
    of the same hour (:func:`naive_values`), the forecast's lower and upper bound), oldest first.

    Stored forecasts of ``horizon`` whose target hour lies in the last :data:`RECENT_HOURS` up to
    ``t0``, whichever model version made them, except the current version's forecasts of origins
    before its training window ended (a replayed hour: the model had seen it). So right after a
    retrain the interval still knows how wrong the forecasts were lately, as a backtest passing
    its earlier blocks' forecasts to ``ModelBundle.predict_frame(past=...)`` does. Read from what
    was stored, so every path that forecasts this origin (a batch, a re-run of one application)
    sees the same pairs.
    """
    from artq.storage import repository as repo

    pairs: dict[str, list[tuple[float, ...]]] = {}
    with rt.db.session() as s:
        rows = repo.forecast_actual_pairs(s, list(versions), t0 - RECENT_HOURS * HOUR, t0, horizon=horizon, bounds=True)
    kept = [r for r in rows if r[2] != versions[r[0]] or r[3] - horizon * HOUR >= trained_until[r[0]]]
    history = target_history(rt, sorted({r[0] for r in kept}), t0, NAIVE_LOOKBACK_HOURS)
    for app, _h, _version, target_hour, actual, forecast, lower, upper in kept:
        back = int((t0 - as_utc(target_hour)) // HOUR)  # hours before t0
        pairs.setdefault(app, []).append((actual, forecast, *naive_values(history[app], back, horizon),
                                          np.nan if lower is None else lower, np.nan if upper is None else upper))
    return {app: np.asarray(p, dtype=float) for app, p in pairs.items()}
