"""A batch's ingest and dashboard refresh write exactly what one application at a time writes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import delete, select

from artq.dashboard import refresh as dashboard_refresh
from artq.dashboard.refresh import refresh_dashboard, refresh_dashboards
from artq.pipeline import Runtime, runs
from artq.pipeline.cycle import refresh_step
from artq.pipeline.ingest import fetch_batch, fetch_new_hours
from artq.storage.db import Database
from artq.storage.models import (
    DashboardAccuracy,
    DashboardForecastActual,
    DashboardForecastDriver,
    DashboardLatestForecast,
    DashboardPercentileBand,
    Observation,
    PipelineRun,
    SourceGap,
)
from artq.timeutil import last_complete_hour
from tests.conftest import make_settings
from tests.dashboard.conftest import HOUR, T0, put_forecasts, seed_actuals

APPS = ("ABP", "BBP", "CBP")
TABLES = {DashboardLatestForecast: ("horizon",), DashboardForecastActual: ("origin", "horizon"),
          DashboardAccuracy: ("period", "horizon"), DashboardPercentileBand: ("horizon", "period"),
          DashboardForecastDriver: ("horizon", "driver_rank")}


def _actual(t):
    return 400.0 if 8 <= t.hour < 18 else 200.0


@pytest.fixture
def three_apps(any_db_url, tmp_path):
    """Three applications with the same history and forecasts (one of them crosses the alert threshold)."""
    settings = make_settings(tmp_path, database_url=any_db_url, apps=list(APPS))
    settings.alerts.threshold_ms = 600.0
    db = Database(any_db_url)
    for app in APPS:
        seed_actuals(db, app, T0 - 10 * 24 * HOUR, T0, _actual)
        for k in range(12, 0, -1):
            origin = T0 - k * HOUR
            put_forecasts(db, app, origin, [_actual(origin + h * HOUR) + 10 for h in range(1, 7)])
        put_forecasts(db, app, T0, [380, 420, 450, 700, 500, 400])
    yield settings, db
    db.dispose()


def _rows(db: Database, app: str) -> dict:
    out = {}
    with db.session() as s:
        for table, key in TABLES.items():
            rows = s.execute(select(table).where(table.application == app)).scalars().all()
            out[table.__tablename__] = sorted(
                (tuple(str(getattr(r, k)) for k in key),
                 {c.name: getattr(r, c.name) for c in table.__table__.columns
                  if c.name not in ("id", "application", "updated_at")})
                for r in rows)
    return out


def _named(app: str, summary: dict) -> str:
    return json.dumps(summary, sort_keys=True, default=str).replace(app, "APP")


def test_a_batch_refresh_writes_what_one_application_at_a_time_writes(three_apps):
    settings, db = three_apps
    with db.session() as s:
        alone = refresh_dashboard(s, settings, "ABP", T0)
    with db.session() as s:
        together = refresh_dashboards(s, settings, ["BBP", "CBP"], T0)
    assert _named("BBP", together["BBP"]) == _named("CBP", together["CBP"]) == _named("ABP", alone)
    assert alone["alert"]["action"] == "open" and alone["current"] is True
    assert _rows(db, "BBP") == _rows(db, "ABP") == _rows(db, "CBP")
    # a re-run of an older origin for the batch keeps every current table on T0, as for one
    with db.session() as s:
        older = refresh_dashboards(s, settings, ["BBP", "CBP"], T0 - HOUR)
    assert older["BBP"]["current"] is False and older["BBP"]["shown_origin"] == T0.isoformat()


def test_one_application_failing_its_refresh_leaves_the_batch_refreshed(three_apps, monkeypatch):
    settings, db = three_apps
    rule_for = dashboard_refresh.rule_for

    def broken(s, app):  # a refresh bug that hits one application only
        if app == "BBP":
            raise RuntimeError("boom for BBP")
        return rule_for(s, app)

    monkeypatch.setattr(dashboard_refresh, "rule_for", broken)
    rt = Runtime(settings, db)
    runs.open_runs(rt, list(APPS), T0, "test")
    results = [{"origin": T0.isoformat(), "horizon": h, "ok": list(APPS), "failed": {}, "versions": {}}
               for h in range(1, 7)]
    out = refresh_step(rt, results, list(APPS), T0)["applications"]
    assert out["ABP"]["status"] == out["CBP"]["status"] == "succeeded"
    assert out["BBP"]["status"] == "failed"
    with db.session() as s:
        statuses = dict(s.execute(select(PipelineRun.application, PipelineRun.status)).all())
        error = s.scalar(select(PipelineRun.error).where(PipelineRun.application == "BBP"))
        latest = set(s.scalars(select(DashboardLatestForecast.application)))
    assert statuses == {"ABP": "succeeded", "BBP": "failed", "CBP": "succeeded"}
    assert error.startswith("refresh: RuntimeError: boom for BBP")
    assert latest == {"ABP", "CBP"}


def test_a_batch_fetch_stores_what_one_application_at_a_time_stores(any_db_url, tmp_path, simulator):
    settings = make_settings(tmp_path, database_url=any_db_url, apps=["ABP"], url=simulator.url)
    settings.backfill_days = 2
    rt = Runtime(settings)
    until = last_complete_hour()
    app = rt.application("ABP")
    try:
        alone = fetch_new_hours(rt, app, until=until - 2 * HOUR)  # the first fetch: two days of history
        with rt.db.session() as s:
            rows_alone = sorted(s.execute(select(Observation.server, Observation.metric, Observation.hour,
                                                 Observation.value)).all())
            gaps_alone = sorted(s.execute(select(SourceGap.server, SourceGap.metric, SourceGap.hour)).all())
            s.execute(delete(Observation))
            s.execute(delete(SourceGap))
        together = fetch_batch(rt, [app], until=until - 2 * HOUR)["ABP"][0]
        with rt.db.session() as s:
            rows = sorted(s.execute(select(Observation.server, Observation.metric, Observation.hour,
                                           Observation.value)).all())
            gaps = sorted(s.execute(select(SourceGap.server, SourceGap.metric, SourceGap.hour)).all())
        # (requests differ by the first fetch's token request)
        assert {**together.as_dict(), "requests": 0} == {**alone.as_dict(), "requests": 0}
        assert together.windows == alone.windows
        assert rows == rows_alone and gaps == gaps_alone and len(rows) > 48 * 24
        # the next hours, incrementally from the watermark
        later = fetch_batch(rt, [app], until=until)["ABP"][0]
        assert later.start == until - 2 * HOUR and later.end == until and later.stored > 0
        with rt.db.session() as s:
            assert s.scalar(select(Observation.hour).order_by(Observation.hour.desc()).limit(1)) == until - timedelta(hours=1)
    finally:
        rt.close()
