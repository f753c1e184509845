from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from artq.config import ApplicationSettings
from artq.dashboard.server import make_server
from tests.dashboard.conftest import HOUR, T0, put_forecasts, refresh, seed_actuals

EVIL = '<img src=x onerror=alert(1)>'


@pytest.fixture
def served(sqlite_settings, db):
    sqlite_settings.applications = [ApplicationSettings(name="ABP"), ApplicationSettings(name=EVIL)]
    sqlite_settings.alerts.threshold_ms = 500.0
    for app in ("ABP", EVIL):
        seed_actuals(db, app, T0 - 8 * 24 * HOUR, T0, 300.0)
        put_forecasts(db, app, T0 - HOUR, [300] * 6)
        put_forecasts(db, app, T0, [320, 340, 520, 380, 300, 300])
        refresh(db, sqlite_settings, app, T0)
    server = make_server(sqlite_settings, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    server.db.dispose()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_api_lists_applications_with_open_alerts(served):
    status, headers, body = get(served + "api/applications")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    apps = json.loads(body)["applications"]
    assert [a["name"] for a in apps] == ["ABP", EVIL] and apps[0]["open_alerts"] == 1


def test_api_application_view_has_every_panel(served):
    status, _, body = get(served + "api/app/ABP?hours=48")
    view = json.loads(body)
    assert status == 200 and view["origin"] == "2026-11-23T09:00:00Z"
    assert len(view["actual"]) == 48 and view["actual"][-1] == ["2026-11-23T09:00:00Z", 300.0]
    assert [f["horizon"] for f in view["forecast"]] == [1, 2, 3, 4, 5, 6]
    f3 = view["forecast"][2]
    assert f3["value"] == 520 and f3["threshold"] == 500 and f3["bands"]["30d"]["p99"] == 300.0
    assert f3["drivers"][0] == ["ABPServer3 load", 41.2]
    assert len(view["accuracy"]) == 12 and view["alerts"][0]["status"] == "open"
    assert view["alerts"][0]["lead_hours"] == 2 and "forecast >= 500 ms" in view["rule"]


def test_unknown_application_and_bad_hours_are_clear_errors(served):
    status, _, body = get(served + "api/app/NOPE")
    assert status == 404 and "unknown application 'NOPE'" in json.loads(body)["error"]
    status, _, body = get(served + "api/app/ABP?hours=lots")
    assert status == 400 and json.loads(body)["error"] == "`hours` must be a whole number of hours. Got 'lots'."


def test_page_is_static_with_a_strict_policy_and_static_files_cannot_escape(served):
    status, headers, body = get(served)
    assert status == 200 and b"/static/uPlot.iife.min.js" in body and b"cdn" not in body.lower()
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    assert get(served + "static/uPlot.iife.min.js")[0] == 200
    assert get(served + "static/uPlot.LICENSE")[0] == 200
    for bad in ("static/../server.py", "static/%2e%2e/server.py", "static/..%2fserver.py", "static/.hidden"):
        assert get(served + bad)[0] == 404


def test_an_application_name_with_markup_travels_as_json_text(served):
    from urllib.parse import quote

    status, _, body = get(served + "api/app/" + quote(EVIL, safe=""))
    assert status == 200 and json.loads(body)["application"] == EVIL
