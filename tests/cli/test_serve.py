"""`artq serve`: the hourly scheduler's timing rules, and a real serve process that runs the cycle and stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime

import pytest

from artq.cli.serve import MAX_TRIES, HourlyCycles
from artq.config import ApplicationSettings
from tests.conftest import make_settings, write_config

NOW = datetime(2026, 11, 29, 14, 2, tzinfo=UTC)  # 14:02: before the default cycle minute (5)
ORIGIN = datetime(2026, 11, 29, 13, tzinfo=UTC)


@pytest.fixture
def cycles(tmp_path):
    settings = make_settings(tmp_path, apps=["ABP", "CRM"])
    done, ran = set(), []

    def run(application, origin):
        ran.append((application, origin))
        status = "failed" if application == "CRM" else "succeeded"
        if status == "succeeded":
            done.add((application, origin))
        return {"application": application, "origin": origin.isoformat(), "status": status, "horizons_ok": [1, 2, 3, 4, 5, 6],
                "failed": {"1": "no model"} if status == "failed" else {}}

    lines = []
    c = HourlyCycles(settings, run=run, done=lambda a, o: (a, o) in done, say=lines.append)
    return c, ran, done, lines


def test_at_start_the_last_complete_hour_runs_at_once_then_only_past_the_cycle_minute(cycles):
    c, ran, done, lines = cycles
    c.run_due(NOW, starting=True)
    assert ran == [("ABP", ORIGIN), ("CRM", ORIGIN)]
    assert lines[0] == "cycle ABP 2026-11-29 13:00 UTC: succeeded (6 horizons)"
    assert lines[1] == "cycle CRM 2026-11-29 13:00 UTC: failed: h1: no model"
    ran.clear()
    c.run_due(NOW.replace(minute=3))  # not starting, before minute 5: nothing
    assert ran == []
    c.run_due(NOW.replace(hour=15, minute=5))  # the next hour, past the minute: both again for 14:00
    assert ran == [("ABP", ORIGIN.replace(hour=14)), ("CRM", ORIGIN.replace(hour=14))]


def test_a_failed_hour_is_retried_later_and_a_limited_number_of_times(cycles):
    c, ran, done, lines = cycles
    c.run_due(NOW, starting=True)
    ran.clear()
    c.run_due(NOW.replace(minute=6))  # ABP is done; CRM failed 4 min ago: not yet
    assert ran == []
    assert c.next_check(NOW.replace(minute=6)) == NOW.replace(minute=12)  # its retry time comes before 15:05
    for minute in (12, 22, 32, 42):
        c.run_due(NOW.replace(minute=minute))
    assert ran == [("CRM", ORIGIN)] * (MAX_TRIES - 1)
    assert c.next_check(NOW.replace(minute=42)) == NOW.replace(hour=15, minute=5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_serve_runs_the_cycle_in_process_serves_the_page_and_stops_on_ctrl_c(tmp_path, trained_sqlite):
    from artq.timeutil import last_complete_hour

    settings, t0, _ = trained_sqlite
    settings.applications = [ApplicationSettings(name="ABP")]
    cfg = write_config(tmp_path / "artq.yml", settings)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | {"ARTQ_HOME": str(tmp_path)}
    # started as a script's background job would be (`artq serve &`, nohup): SIGINT inherited as
    # ignored; Ctrl-C (a SIGINT) still stops it
    proc = subprocess.Popen([sys.executable, "-m", "artq", "serve", "--port", str(port), "--config", cfg], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if re.search(r"cycle ABP \S+ \S+ UTC: ", line):
                break
        assert any(re.search(r"cycle ABP .* UTC: succeeded \(6 horizons\)", line) for line in lines), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/app/ABP", timeout=10) as resp:
            view = json.loads(resp.read())
        origin = last_complete_hour()
        assert view["origin"] == origin.isoformat().replace("+00:00", "Z")
        assert view["runs"][0]["trigger"] == "serve" and view["runs"][0]["status"] == "succeeded"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "artq serve: stopped" in out and "Traceback" not in err


def test_serve_with_a_broker_configured_is_a_one_line_mistake(tmp_path):
    from tests.cli.test_parsing import artq

    out = artq(tmp_path, "serve", extra_env={"ARTQ_BROKER_URL": "redis://127.0.0.1:6379/15"})
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("artq: error: a broker is configured (`celery.broker_url` / ARTQ_BROKER_URL)")


def test_serve_with_no_controller_names_the_setting_and_the_simulate_flag(tmp_path):
    from tests.cli.test_parsing import artq

    out = artq(tmp_path, "serve", "--port", "0")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("artq: error: no controller configured: set `source.url` (or ARTQ_SOURCE_URL)")


def test_serve_reads_the_application_list_each_hour(cycles):
    c, ran, _, _ = cycles
    names = ["ABP"]
    c.names = lambda: list(names)
    assert c.due(NOW.replace(minute=10)) == [("ABP", ORIGIN)]
    names.append("NEW")  # `artq apps add NEW` while serve runs
    assert ("NEW", ORIGIN) in c.due(NOW.replace(minute=10))
