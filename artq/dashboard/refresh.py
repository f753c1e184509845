"""Refresh of the dashboard tables for one application after a cycle (idempotent)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from artq.config import Settings
from artq.storage import repository as repo
from artq.storage.db import upsert
from artq.storage.models import (
    DashboardForecastActual,
    DashboardLatestForecast,
    Forecast,
)
from artq.timeutil import as_utc, utcnow

FORECAST_ACTUAL_DAYS = 14  # how far back forecast-vs-actual rows are (re)computed


def refresh_dashboard(session: Session, settings: Settings, application: str, origin: datetime) -> dict[str, Any]:
    now = utcnow()
    latest = repo.forecasts_for(session, application, origin)
    upsert(
        session,
        DashboardLatestForecast.__table__,
        [
            dict(application=application, horizon=f.horizon, origin=origin, target_hour=as_utc(f.target_hour), value=f.value,
                 lower=f.lower, upper=f.upper, model_version=f.model_version, updated_at=now)
            for f in latest
        ],
        keys=("application", "horizon"),
    )
    since = origin - timedelta(days=FORECAST_ACTUAL_DAYS)
    past = list(session.scalars(select(Forecast).where(Forecast.application == application, Forecast.origin >= since)))
    actual = repo.actuals(session, application, [as_utc(f.target_hour) for f in past])
    rows = []
    for f in past:
        a = actual.get(as_utc(f.target_hour))
        inside = None if a is None or f.lower is None or f.upper is None else bool(f.lower <= a <= f.upper)
        rows.append(
            dict(application=application, origin=as_utc(f.origin), horizon=f.horizon, target_hour=as_utc(f.target_hour),
                 forecast=f.value, lower=f.lower, upper=f.upper, actual=a,
                 abs_error=None if a is None else abs(a - f.value), inside_interval=inside, updated_at=now)
        )
    upsert(session, DashboardForecastActual.__table__, rows, keys=("application", "origin", "horizon"))
    return {"latest_rows": len(latest), "forecast_actual_rows": len(rows), "with_actual": sum(r["actual"] is not None for r in rows)}
