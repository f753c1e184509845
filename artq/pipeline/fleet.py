"""The hourly cycle for a fleet: the same three steps, each over a batch of applications.

Per batch of applications the canvas keeps the cycle's shape (``workers/canvas.py``)::

    chain(fleet_fetch(apps), chord(group(fleet_predict(h) for h in 1..6), fleet_refresh(apps)))

Why batch: one application's cycle costs ~0.2-0.5 s of CPU when its three steps run one
application at a time (a frame query, ~200 pandas column operations for the features, eight
small tasks); a thousand of them do not fit in a minute on two cores. Batched, the expensive
parts are paid once per batch instead of once per application and horizon:

- the fetch step, after ingesting, reads the history of the whole batch with two queries (the
  target's last 169 hours, the other series' last 25 — all the features read, see
  :data:`EXOG_LOOKBACK_HOURS`) and builds the feature rows of all six horizons, once;
- the features of the whole batch come from *one* call of the application's own
  :class:`~artq.forecasting.features.FeatureBuilder`: each application's hours sit in a block of
  336 rows (two weeks, so hour-of-day and weekday stay true) with 167 empty rows in front, and
  every feature reads at most 168 rows back, so no application ever sees another's data;
- the rows travel to the six horizon tasks as short feature vectors (a column identical for all
  six horizons is sent once), so a horizon task reads nothing from the database; it predicts
  each application with its own model (one XGBoost call per model) and upserts all rows at once;
- the refresh runs each application's dashboard refresh and run update in one transaction of
  its own (a batch-wide transaction held too many locks: the two workers' batches deadlocked).

Per application, everything stays as in the single cycle: its run row (status, timings, task
ids, error), forecasts upserted on their unique key, the dashboard refresh, failures recorded
per application and horizon. Nothing here imports Celery.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, literal_column, or_, select

from artq.catalog import MAIN, TARGET_METRIC, series_name
from artq.errors import ArtqError
from artq.forecasting.batch import predict_many
from artq.pipeline.ingest import fetch_new_hours
from artq.pipeline.runtime import Runtime, is_transient, retry_safe
from artq.pipeline.steps import HORIZONS, _origin, describe, refresh_in_session
from artq.storage import repository as repo
from artq.storage.db import upsert
from artq.storage.models import Forecast, Observation, PipelineRun
from artq.timeutil import HOUR, as_utc, utcnow

BLOCK_HOURS = 336  # rows per application in the stacked frame: a multiple of 168 keeps the calendar
EXOG_LOOKBACK_HOURS = 24  # series other than the target: lags 0-1, 3/6/24-hour windows, 24-hour deltas


def batches(names: list[str], size: int) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


# -- runs ----------------------------------------------------------------------------------------


@retry_safe
def begin_runs(rt: Runtime, applications: list[str], origin: str | datetime, trigger: str) -> None:
    """Open (or reopen) the run row of every application of a batch, in one transaction."""
    t0 = _origin(origin)
    now = utcnow()
    with rt.db.session() as s:
        existing = {r.application: r for r in s.scalars(
            select(PipelineRun).where(PipelineRun.origin == t0, PipelineRun.application.in_(applications)))}
        for name in applications:
            run = existing.get(name)
            if run is None:
                s.add(PipelineRun(application=name, origin=t0, status="running", trigger=trigger, attempts=1,
                                  started_at=now, task_ids={}, details={}))
            else:
                run.status, run.trigger, run.started_at, run.finished_at, run.error = "running", trigger, now, None, None
                run.attempts, run.task_ids, run.details = (run.attempts or 0) + 1, {}, {}


@retry_safe
def done_applications(rt: Runtime, applications: list[str], origin: str | datetime) -> set[str]:
    with rt.db.session() as s:
        return set(s.scalars(select(PipelineRun.application).where(
            PipelineRun.origin == _origin(origin), PipelineRun.status.in_(("succeeded", "partial")),
            PipelineRun.application.in_(applications))))


def _update_runs(rt: Runtime, t0: datetime, fields: dict[str, dict[str, Any]]) -> None:
    with rt.db.session() as s:
        runs = {r.application: r for r in s.scalars(
            select(PipelineRun).where(PipelineRun.origin == t0, PipelineRun.application.in_(list(fields))))}
        for name, values in fields.items():
            run = runs.get(name)
            if run is None:
                continue
            for key, value in values.items():
                if key in ("task_ids", "details"):
                    value = {**(getattr(run, key) or {}), **value}
                setattr(run, key, value)


# -- fetch -----------------------------------------------------------------------------------------


@retry_safe
def fleet_fetch_step(rt: Runtime, applications: list[str], origin: str | datetime, task_id: str | None = None) -> dict:
    """Ingest every application's new hours, then build the batch's feature vectors for the six horizons.

    A non-transient failure closes that application's run only; a transient one retries the batch.
    """
    t0 = _origin(origin)
    ok, failed, fields = [], {}, {}
    started = time.perf_counter()

    def ingest(name: str) -> tuple[str, Any, float]:
        began = time.perf_counter()
        try:
            return name, fetch_new_hours(rt, rt.settings.application(name), until=t0 + HOUR), time.perf_counter() - began
        except Exception as exc:  # noqa: BLE001 - sorted out below: transient retries the batch, the rest is recorded
            return name, exc, time.perf_counter() - began

    # I/O against the controller: overlap the applications' requests (the client is thread-safe)
    with ThreadPoolExecutor(max(1, min(rt.settings.operations.fleet_fetch_threads, len(applications)))) as pool:
        outcomes = list(pool.map(ingest, applications))
    for name, summary, elapsed in outcomes:
        if isinstance(summary, Exception):
            if is_transient(summary):
                raise summary  # the source or database is away for everyone: the whole batch retries
            failed[name] = f"fetch: {describe(summary)}"
            fields[name] = {"status": "failed", "finished_at": utcnow(), "error": failed[name]}
            continue
        ok.append(name)
        fields[name] = {"fetch_s": round(elapsed, 4), "task_ids": {"fetch": task_id},
                        "details": {"fetch": summary.as_dict()}}
    _update_runs(rt, t0, fields)
    feats = batch_features(rt, ok, t0)
    return {"origin": t0.isoformat(), "applications": ok, "failed": failed, "unpredictable": feats["failed"],
            "features": encode_features(feats["layouts"]), "seconds": round(time.perf_counter() - started, 3)}


# -- features ----------------------------------------------------------------------------------------


def _load_batch(rt: Runtime, applications: list[str], t0: datetime, lookback: int) -> list[tuple]:
    """(application, server, metric, hours before t0, value) of the hours the features read, for the batch.

    Core rows, not ORM objects; on MariaDB the server computes the hour offset (a Python datetime
    per row cost more than the query itself).
    """
    obs = Observation.__table__.c
    with rt.db.session() as s:
        mysql = s.get_bind().dialect.name in ("mysql", "mariadb")
        back = (func.timestampdiff(literal_column("HOUR"), obs.hour, t0.replace(tzinfo=None)) if mysql else obs.hour)
        cols = (obs.application, obs.server, obs.metric, back, obs.value)
        target = s.execute(select(*cols).where(  # the unique key's index: (application, server, metric, hour)
            obs.application.in_(applications), obs.server == MAIN, obs.metric == TARGET_METRIC,
            obs.hour >= t0 - lookback * HOUR, obs.hour <= t0)).all()
        recent = s.execute(select(*cols).where(
            obs.application.in_(applications), obs.hour > t0 - (EXOG_LOOKBACK_HOURS + 1) * HOUR,
            obs.hour <= t0, or_(obs.server != MAIN, obs.metric != TARGET_METRIC))).all()
    rows = target + recent
    if not mysql:  # SQLite: offsets from the (naive UTC) datetimes
        t0n = as_utc(t0).replace(tzinfo=None)
        rows = [(a, sv, m, int((t0n - h.replace(tzinfo=None)).total_seconds() // 3600), v) for a, sv, m, h, v in rows]
    return rows


def batch_features(rt: Runtime, applications: list[str], origin: str | datetime) -> dict[str, Any]:
    """Feature rows of every application at ``origin`` for the six horizons, one builder call per model layout.

    Returns ``{"X": {h: DataFrame (one row per application)}, "failed": {app: reason}}``.
    """
    t0 = _origin(origin)
    models, failed = {}, {}
    for name in applications:
        try:
            models[name] = rt.champion(name)[0]
        except ArtqError as exc:
            failed[name] = str(exc)
    layouts: dict[tuple, list[str]] = {}
    for name, bundle in models.items():
        layouts.setdefault((bundle.target, tuple(bundle.exog)), []).append(name)
    lookback = max((b.history_hours_needed for b in models.values()), default=1) - 1
    per_app: dict[str, list[tuple]] = {}
    for r in _load_batch(rt, list(models), t0, lookback) if models else []:
        per_app.setdefault(r[0], []).append(r)
    out: list[dict[str, Any]] = []
    for (target, exog), names in layouts.items():
        have = [n for n in names if any(r[3] == 0 and r[1] == MAIN and r[2] == TARGET_METRIC for r in per_app.get(n, ()))]
        for n in set(names) - set(have):
            failed[n] = f"no `{target}` value stored for the origin {t0.isoformat()}; fetch its history first."
        if not have:
            continue
        frame, origins = _stacked_frame(have, per_app, t0, [target, *exog])
        X = models[have[0]].builder.transform_at(frame, origins, list(HORIZONS))
        out.append({h: X[h].set_axis(have, axis=0) for h in HORIZONS})
    return {"layouts": out, "failed": failed}


def _stacked_frame(names: list[str], per_app: dict[str, list[tuple]], t0: datetime, columns: list[str]):
    """One wide frame holding each application's hours in its own 336-row block (see the module doc)."""
    n, col_index = len(names), {c: i for i, c in enumerate(columns)}
    data = np.full((n * BLOCK_HOURS, len(columns)), np.nan)
    names_of: dict[tuple[str, str], int | None] = {}
    for k, name in enumerate(names):
        end = k * BLOCK_HOURS + BLOCK_HOURS - 1  # the row of this application's origin
        for _, server, metric, back, value in per_app.get(name, ()):
            col = names_of.get((metric, server), -1)
            if col == -1:
                col = names_of[(metric, server)] = col_index.get(series_name(metric, server))
            if col is not None and 0 <= back < BLOCK_HOURS and value is not None:
                data[end - back, col] = value
    start = pd.Timestamp(t0) - pd.Timedelta(hours=n * BLOCK_HOURS - 1)
    index = pd.date_range(start, periods=n * BLOCK_HOURS, freq="h", name="hour")
    origins = index[BLOCK_HOURS - 1 :: BLOCK_HOURS]
    return pd.DataFrame(data, index=index, columns=columns), origins


def encode_features(layouts: list[dict[int, pd.DataFrame]]) -> list[dict[str, Any]]:
    """JSON-ready feature vectors: per layout, the columns equal in all six horizons once, the rest per horizon."""
    out = []
    for X in layouts:
        first = X[1]
        varying = [c for c in first.columns if any(not X[h][c].equals(first[c]) for h in HORIZONS)]
        shared = [c for c in first.columns if c not in set(varying)]
        out.append({
            "applications": list(first.index), "shared": shared, "varying": varying,
            "shared_rows": _json_rows(first[shared]),
            "varying_rows": {str(h): _json_rows(X[h][varying]) for h in HORIZONS},
        })
    return out


def decode_features(layout: dict[str, Any], horizon: int) -> pd.DataFrame:
    shared = pd.DataFrame(layout["shared_rows"], columns=layout["shared"], index=layout["applications"], dtype=float)
    varying = pd.DataFrame(layout["varying_rows"][str(horizon)], columns=layout["varying"], index=layout["applications"],
                           dtype=float)
    return pd.concat([shared, varying], axis=1)


def _json_rows(frame: pd.DataFrame) -> list[list[float | None]]:
    values = frame.to_numpy(dtype=float).astype(object)
    values[pd.isna(frame.to_numpy(dtype=float))] = None  # NaN -> null in JSON
    return values.tolist()


# -- predict ---------------------------------------------------------------------------------------------


@retry_safe
def fleet_predict_step(rt: Runtime, payload: dict[str, Any], horizon: int, task_id: str | None = None) -> dict[str, Any]:
    """Forecast hour ``origin + horizon`` for every application of the batch; store them in one upsert."""
    if horizon not in HORIZONS:
        raise ValueError(f"`horizon` must be in 1..6. Got {horizon}.")
    started = time.perf_counter()
    t0 = _origin(payload["origin"])
    failed = dict(payload.get("unpredictable") or {})
    stored, versions, now = [], {}, utcnow()
    for layout in payload.get("features") or []:
        X = decode_features(layout, horizon)
        models = {}
        for name in X.index:
            try:
                models[name] = rt.champion(name)
            except ArtqError as exc:
                failed[name] = str(exc)
        names = [n for n in X.index if n in models]
        if not names:
            continue
        X = X.loc[names, models[names[0]][0].feature_names_]  # one layout: the same feature names for all
        for f in predict_many([models[n][0] for n in names], X, horizon):
            name = f["application"]
            versions[name] = models[name][1]
            stored.append({**f, "origin": t0, "horizon": horizon, "target_hour": t0 + horizon * HOUR,
                           "model_version": models[name][1], "created_at": now})
    with rt.db.session() as s:
        upsert(s, Forecast.__table__, stored, keys=("application", "origin", "horizon"))
    return {"origin": t0.isoformat(), "horizon": horizon, "ok": [r["application"] for r in stored], "failed": failed,
            "fetch_failed": payload.get("failed") or {}, "versions": versions,
            "seconds": round(time.perf_counter() - started, 3), "task_id": task_id}


# -- refresh -----------------------------------------------------------------------------------------


def _refresh_one(rt: Runtime, results: list[dict[str, Any]], application: str, t0: datetime, task_id: str | None,
                 attempts: int = 4) -> str:
    """One application's refresh in its own transaction; a deadlock with the other worker's batch is retried here."""
    for attempt in range(1, attempts + 1):
        try:
            with rt.db.session() as s:
                return refresh_in_session(s, rt, results, application, t0, task_id=task_id)["status"]
        except Exception as exc:
            if is_transient(exc):
                if attempt < attempts:
                    time.sleep(0.05 * attempt)
                    continue
                raise
            with rt.db.session() as s:
                repo.update_run(s, application, t0, status="failed", finished_at=utcnow(), error=f"refresh: {describe(exc)}")
            return "failed"
    return "failed"  # pragma: no cover - the loop returns or raises


@retry_safe
def fleet_refresh_step(rt: Runtime, results: list[dict[str, Any]], applications: list[str], origin: str | datetime,
                       task_id: str | None = None) -> dict[str, Any]:
    """Chord callback of a batch: per application, refresh its dashboard and close its run.

    An application whose fetch failed was closed by the fetch step already and is left as it is.
    """
    t0 = _origin(origin)
    results = [r for r in results if isinstance(r, dict)]
    fetch_failed: dict[str, str] = {}
    for r in results:
        fetch_failed.update(r.get("fetch_failed") or {})
    by_horizon = {r.get("horizon"): r for r in results}
    outcome: dict[str, str] = {}
    jobs: dict[str, list[dict[str, Any]]] = {}
    for name in applications:
        if name in fetch_failed:
            outcome[name] = "failed"
            continue
        per_app = []
        for h in HORIZONS:
            r = by_horizon.get(h)
            if r is None:
                per_app.append({"horizon": h, "ok": False, "error": "no result reached the refresh step"})
            elif name in (r.get("ok") or ()):
                per_app.append({"horizon": h, "ok": True, "model_version": (r.get("versions") or {}).get(name),
                                "seconds": r.get("seconds"), "task_id": r.get("task_id"), "worker": r.get("worker")})
            else:
                error = (r.get("failed") or {}).get(name) or r.get("error") or "unknown error"
                per_app.append({"horizon": h, "ok": False, "error": error, "task_id": r.get("task_id")})
        jobs[name] = per_app
    for name, per_app in jobs.items():
        outcome[name] = _refresh_one(rt, per_app, name, t0, task_id)
    counts: dict[str, int] = {}
    for status in outcome.values():
        counts[status] = counts.get(status, 0) + 1
    return {"origin": t0.isoformat(), "applications": len(applications), "statuses": counts}
