"""The dashboard in real headless Chromium, against a database filled by real cycles of two applications."""

from __future__ import annotations

import base64
import os
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
    finally:
        rt.close()
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


def test_dashboard_renders_charts_switches_application_and_screenshots(page, dashboard_url, tmp_path):
    page.goto(dashboard_url)
    page.wait_for_selector("body[data-app='ABP']")
    _chart_drawn(page)
    assert page.locator("#next tbody tr").count() == 6
    assert page.locator("#next .bullet").count() == 6  # percentile bands drawn per horizon
    assert page.locator("#accuracy tbody tr").count() == 6
    assert page.locator("#runs tbody tr").count() == 3
    assert page.locator("#runs .pill.succeeded").count() == 3
    assert page.locator("#next .driver").count() >= 6  # driver attribution next to the forecasts
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
