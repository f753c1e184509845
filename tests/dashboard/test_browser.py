"""The dashboard in real headless Chromium, against a database filled by real cycles of two applications."""

from __future__ import annotations

import base64
import os
import re
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from artq.storage import migrate
from tests.conftest import make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
APPS = ["ABP", "CRM"]

# counts the pixels of a <canvas> that are drawn (not transparent, not white) and those near a colour
CANVAS_STATS = """([sel, rgb]) => {
  const c = document.querySelector(sel);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let drawn = 0, near = 0;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i + 3] > 0 && !(d[i] > 245 && d[i + 1] > 245 && d[i + 2] > 245)) drawn++;
    if (d[i + 3] > 200 && Math.abs(d[i] - rgb[0]) < 40 && Math.abs(d[i + 1] - rgb[1]) < 40 && Math.abs(d[i + 2] - rgb[2]) < 40) near++;
  }
  return {drawn, near, total: d.length / 4};
}"""

# decodes a PNG in the browser (no imaging library needed) and measures how much of it is not blank
PNG_STATS = """async (b64) => {
  const img = new Image();
  img.src = 'data:image/png;base64,' + b64;
  await img.decode();
  const c = document.createElement('canvas');
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  const colours = new Set();
  let ink = 0;
  for (let i = 0; i < d.length; i += 4 * 7) {
    colours.add((d[i] >> 3) << 10 | (d[i + 1] >> 3) << 5 | (d[i + 2] >> 3));
    if (d[i] + d[i + 1] + d[i + 2] < 600) ink++;
  }
  return {width: img.width, height: img.height, colours: colours.size, ink_share: ink / (d.length / 4 / 7)};
}"""


@pytest.fixture(scope="module")
def filled_settings(tmp_path_factory):
    """Two applications: simulator history, a champion each, and three real cycles each (in-process canvas)."""
    from artq.pipeline import Runtime, train_step
    from artq.pipeline.ingest import backfill
    from artq.timeutil import last_complete_hour
    from workers.canvas import run_cycle

    tmp = tmp_path_factory.mktemp("dash")
    settings = make_settings(tmp, apps=APPS)
    settings.source.simulate = True  # the built-in simulator on loopback, asked for explicitly
    settings.forecast.training_days = 21
    settings.alerts.band, settings.alerts.band_window = "p90", "7d"
    migrate(settings.database_url)
    t0 = last_complete_hour()
    rt = Runtime(settings)
    try:
        for app in settings.applications:
            backfill(rt, app, t0 - timedelta(days=21) + timedelta(hours=1), t0 + timedelta(hours=1))
            train_step(rt, app.name, tune=False, until=t0 - timedelta(hours=3))
        for k in (2, 1, 0):
            for app in APPS:
                out = run_cycle(rt, app, t0 - timedelta(hours=k))
                assert out["status"] == "succeeded", out
        for k in (1, 2):  # recovery re-runs of older hours after the current one: the page must still show t0
            assert run_cycle(rt, "ABP", t0 - timedelta(hours=k))["status"] == "succeeded"
    finally:
        rt.close()
    settings.t0 = t0
    return settings


@pytest.fixture
def dashboard_url(filled_settings):
    from artq.dashboard.server import make_server

    server = make_server(filled_settings, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    server.db.dispose()


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y --no-install-recommends chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1360, "height": 900})
        pg.errors = []
        pg.on("pageerror", lambda e: pg.errors.append(str(e)))
        pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
        yield pg
        browser.close()


def _chart_drawn(page) -> dict:
    page.wait_for_selector("#chart canvas")
    page.wait_for_timeout(150)  # one animation frame for uPlot to paint
    forecast = page.evaluate(CANVAS_STATS, ["#chart canvas", [37, 99, 235]])
    actual = page.evaluate(CANVAS_STATS, ["#chart canvas", [31, 41, 55]])
    assert forecast["near"] > 100, f"no forecast line drawn: {forecast}"
    assert actual["near"] > 300, f"no actual ART line drawn: {actual}"
    assert forecast["drawn"] > 0.02 * forecast["total"], forecast
    return forecast


def test_dashboard_renders_charts_switches_application_and_screenshots(page, dashboard_url, filled_settings, tmp_path):
    page.goto(dashboard_url)
    page.wait_for_selector("body[data-app='ABP']")
    _chart_drawn(page)
    assert page.locator("#next tbody tr").count() == 6
    assert page.locator("#next .bullet").count() == 18  # three percentile bands per horizon
    assert page.locator("#accuracy tbody tr").count() == 6
    assert page.locator("#runs tbody tr").count() == 3
    assert page.locator("#runs .pill.succeeded").count() == 3
    assert page.locator("#next .driver").count() >= 6  # driver attribution next to the forecasts
    # t0 was re-run after t0-1 and t0-2 were: the next six hours are still those after t0
    t1 = filled_settings.t0 + timedelta(hours=1)
    assert page.inner_text("#next tbody tr:first-child td:first-child").startswith(f"{t1:%H}:00–")
    assert not page.is_visible("#stale") and page.get_attribute("body", "data-stale") == "false"
    assert "min old" in page.inner_text("#clock")
    # all three band periods, a legend for the drivers, sizes in ms with a direction
    assert page.locator("#next .bullet[data-period='7d']").count() == 6
    assert page.locator("#next .bullet[data-period='30d']").count() == 6
    assert page.locator("#next .bullet[data-period='hour_of_week']").count() == 6
    assert "same hour of week" in page.inner_text("#next tbody tr:first-child")
    chips = page.locator("#next .driver").all_inner_texts()
    assert all(re.search(r"[↑↓] [+−]\d[\d,]* ms$", c) for c in chips), chips
    legend = page.inner_text("#drivers-legend")
    assert "pushes the forecast up" in legend and "pulls it down" in legend and "milliseconds" in legend
    assert "validation" in page.inner_text("#card-acc").lower() or "last 24 h" in page.inner_text("#card-acc").lower()
    assert "UTC" in page.inner_text("#clock") and "UTC" in page.inner_text("#next thead")
    first_abp = page.inner_text("#next tbody tr:first-child")

    page.click("nav#apps button[data-app='CRM']")
    page.wait_for_selector("body[data-app='CRM']")
    assert page.get_attribute("nav#apps button[data-app='CRM']", "aria-pressed") == "true"
    assert "#app=CRM" in page.url and page.title() == "artq · CRM"
    _chart_drawn(page)
    assert page.inner_text("#next tbody tr:first-child") != first_abp

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    stats = page.evaluate(PNG_STATS, base64.b64encode(shot.read_bytes()).decode())
    assert stats["width"] == 1360 and stats["height"] > 900, stats
    assert stats["colours"] > 40 and 0.03 < stats["ink_share"] < 0.9, f"screenshot looks blank: {stats}"
    assert page.errors == []
    if out := os.environ.get("ARTQ_DASHBOARD_SCREENSHOT"):
        shutil.copyfile(shot, out)  # how docs/dashboard.png is refreshed


def test_markup_in_stored_text_is_shown_as_text_not_run(page, dashboard_url, filled_settings):
    """Values reach the DOM through textContent: an alert message cannot add elements or run script."""
    from artq.storage.db import Database
    from artq.storage.models import Alert
    from artq.timeutil import utcnow

    evil = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
    db = Database(filled_settings.database_url)
    with db.session() as s:
        s.add(Alert(key="freshness:ABP:xss", application="ABP", kind="freshness", status="open", severity="warning",
                    opened_at=utcnow(), message=evil, notify_attempts=0))
    db.dispose()
    page.goto(dashboard_url)
    page.wait_for_selector("body[data-app='ABP']")
    page.wait_for_timeout(200)
    assert evil in page.inner_text("#alerts")
    assert page.evaluate("window.__xss") is None
    assert page.locator("main img, main script").count() == 0


@pytest.fixture
def synthetic(sqlite_settings):
    """A dashboard database filled by hand: the shown forecast's origin is chosen by the test."""
    from artq.storage.db import Database

    db = Database(sqlite_settings.database_url)
    servers = []

    def serve(origin, **alerts):
        from artq.dashboard.server import make_server
        from tests.dashboard.conftest import put_forecasts, refresh, seed_actuals

        for key, value in alerts.items():
            setattr(sqlite_settings.alerts, key, value)
        seed_actuals(db, "ABP", origin - timedelta(days=35), origin, 300.0)
        put_forecasts(db, "ABP", origin, [320, 330, 310, 300, 290, 280], width=40.0,
                      drivers=[["abpserver3 load", 41.2], ["calendar", -12.4], ["ART history", 3.3]])
        refresh(db, sqlite_settings, "ABP", origin)
        server = make_server(sqlite_settings, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.url

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
        server.db.dispose()
    db.dispose()


def test_a_stale_forecast_shows_a_banner_instead_of_the_green_card(page, synthetic, tmp_path):
    from artq.timeutil import last_complete_hour

    url = synthetic(last_complete_hour() - timedelta(hours=4))
    page.goto(url)
    page.wait_for_selector("body[data-app='ABP']")
    assert page.is_visible("#stale") and page.get_attribute("body", "data-stale") == "true"
    banner = page.inner_text("#stale")
    assert banner.startswith("Stale forecast.") and "behind the expected" in banner
    assert page.get_attribute("#card-run", "class") == "card bad" and page.inner_text("#run-state") == "Stale"
    assert page.inner_text("#peak-label").lower() == "peak of the last forecast (stale)"
    assert re.search(r"· [45] h old", page.inner_text("#clock"))
    colour = page.evaluate("getComputedStyle(document.querySelector('#stale')).borderTopColor")
    assert colour == "rgb(220, 38, 38)", colour  # red, not the green of a healthy card
    assert page.errors == []
    if out := os.environ.get("ARTQ_DASHBOARD_STALE_SCREENSHOT"):
        page.screenshot(path=out, full_page=True)


def test_with_compare_upper_the_upper_bound_that_crossed_is_highlighted(page, synthetic):
    from artq.timeutil import last_complete_hour

    # forecasts 280..330 ms with ±40 ms: only the upper bounds of +1 h to +3 h (360, 370, 350) reach 350 ms
    url = synthetic(last_complete_hour(), compare="upper", threshold_ms=350.0)
    page.goto(url)
    page.wait_for_selector("body[data-app='ABP']")
    crossed = page.locator("#next .crossed")
    assert crossed.count() == 3 and crossed.all_inner_texts() == ["360", "370", "350"]
    assert page.locator("#next td.fc.crossed").count() == 0  # the point forecast did not cross: not highlighted
    assert page.evaluate("getComputedStyle(document.querySelector('#next .upper.crossed')).color") == "rgb(220, 38, 38)"
    assert page.inner_text("#compare-what") == "the interval's upper bound"
    assert page.inner_text("#alert-state") == "Breach expected" and "upper bound 360 ms" in page.inner_text("#alert-detail")
    assert [t.split(" ")[0] for t in page.locator("#alerts li .kind").all_inner_texts()] == ["Breach"]
    assert page.errors == []


def test_freshness_alert_is_described_by_its_kind_not_as_an_easing_breach(page, synthetic, sqlite_settings):
    from artq.storage.db import Database
    from artq.storage.models import Alert
    from artq.timeutil import last_complete_hour, utcnow

    origin = last_complete_hour() - timedelta(hours=2)
    db = Database(sqlite_settings.database_url)
    with db.session() as s:
        s.add(Alert(key="freshness:ABP:x", application="ABP", kind="freshness", status="open", severity="warning",
                    opened_at=utcnow(), origin=last_complete_hour(), notify_attempts=0,
                    message="ABP: no completed forecast cycle by minute 20"))
    db.dispose()
    page.goto(synthetic(origin, threshold_ms=1000.0))
    page.wait_for_selector("body[data-app='ABP']")
    assert page.inner_text("#alert-state") == "Forecasts stale"
    assert "easing" not in page.inner_text("#card-alert")
    assert page.inner_text("#alerts li[data-kind='freshness'] .kind") == "Forecasts stale"
    assert page.errors == []
