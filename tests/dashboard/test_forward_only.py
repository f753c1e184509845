"""Run hour t, then t-1 and t-2 again (the in-process cycle, SQLite and MariaDB): the dashboard still shows t.

The JSON API, on a real HTTP server, states the age of what it shows and whether it is stale.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import select

from artq.storage.db import Database
from artq.storage.models import DashboardForecastDriver, DashboardLatestForecast, DashboardPercentileBand
from artq.timeutil import as_utc, last_complete_hour
from tests.conftest import backfill_and_train, make_settings
from tests.dashboard.conftest import HOUR, put_forecasts, refresh, seed_actuals

pytestmark = pytest.mark.integration


def _api(settings, path):
    from artq.dashboard.server import make_server

    server = make_server(settings, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with urllib.request.urlopen(server.url + path, timeout=10) as resp:
            return json.loads(resp.read())
    finally:
        server.shutdown()
        server.server_close()
        server.db.dispose()


def _iso(t):
    return as_utc(t).isoformat().replace("+00:00", "Z")


def test_rerunning_older_hours_after_the_current_one_keeps_the_dashboard_on_it(any_db_url, tmp_path, simulator):
    from artq.pipeline import Runtime
    from workers.canvas import run_cycle

    settings = make_settings(tmp_path, database_url=any_db_url, url=simulator.url)
    t0, _ = backfill_and_train(settings, days=21)
    rt = Runtime(settings)
    try:
        for k in (0, 1, 2):  # the current hour first, then recovery re-runs of the two before it
            out = run_cycle(rt, "ABP", t0 - k * HOUR)
            assert out["status"] == "succeeded", out
    finally:
        rt.close()
    db = Database(any_db_url)
    with db.session() as s:
        for table in (DashboardLatestForecast, DashboardPercentileBand, DashboardForecastDriver):
            assert {as_utc(o) for o in s.scalars(select(table.origin))} == {t0}, table.__tablename__
    db.dispose()
    view = _api(settings, "api/app/ABP")
    assert view["origin"] == _iso(t0)
    assert [f["target_hour"] for f in view["forecast"]] == [_iso(t0 + h * HOUR) for h in range(1, 7)]
    assert [r["origin"] for r in view["runs"][:3]] == [_iso(t0), _iso(t0 - HOUR), _iso(t0 - 2 * HOUR)]
    assert view["freshness"]["shown_origin"] == _iso(t0) and view["freshness"]["age_minutes"] >= 0


def test_the_api_states_the_age_and_staleness_of_what_it_shows(sqlite_settings, tmp_path):
    db = Database(sqlite_settings.database_url)
    origin = last_complete_hour() - 5 * HOUR
    seed_actuals(db, "ABP", origin - timedelta(days=8), origin, 300.0)
    put_forecasts(db, "ABP", origin, [300] * 6)
    refresh(db, sqlite_settings, "ABP", origin)
    db.dispose()
    view = _api(sqlite_settings, "api/app/ABP")
    fresh = view["freshness"]
    assert fresh["stale"] is True and fresh["shown_origin"] == _iso(origin)
    assert fresh["hours_behind"] in (4, 5)  # 5 h behind the last complete hour, 4 before its freshness minute
    assert 4 * 60 <= fresh["age_minutes"] < 6 * 60
    assert fresh["message"].startswith(f"the newest forecast is from the cycle of {origin:%Y-%m-%d %H:00} UTC")
    apps = _api(sqlite_settings, "api/applications")["applications"]
    assert apps[0]["stale"] is True and apps[0]["age_minutes"] >= fresh["age_minutes"]


def test_an_empty_dashboard_is_stale_and_says_what_to_run(sqlite_settings):
    view = _api(sqlite_settings, "api/app/ABP")
    assert view["freshness"]["stale"] is True and view["freshness"]["age_minutes"] is None
    assert "artq serve" in view["freshness"]["message"]
