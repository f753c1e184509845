"""Flower with authentication: its API refuses anonymous calls and lists the workers with credentials."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

USER, PASSWORD = "ops", "s3cret-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def flower(tmp_path, cycle_env):
    config = cycle_env.write_config()
    port = _free_port()
    log = tmp_path / "flower.log"
    env = {**os.environ, "ARTQ_CONFIG": config, "FLOWER_BASIC_AUTH": f"{USER}:{PASSWORD}", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "celery", "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}",
           f"--basic-auth={env['FLOWER_BASIC_AUTH']}", f"--db={tmp_path / 'flower.db'}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthcheck", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"flower did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield base, config
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_flower_api_refuses_anonymous_calls_and_lists_workers_with_credentials(flower, cycle_env, start_workers):
    base, config = flower
    workers = start_workers(config, cycle_env.redis_url, n=2)
    assert requests.get(f"{base}/api/workers", timeout=10).status_code == 401
    assert requests.get(f"{base}/api/workers", auth=(USER, "wrong"), timeout=10).status_code == 401
    assert requests.get(f"{base}/", timeout=10).status_code == 401  # the UI too

    deadline = time.monotonic() + 30
    listed: set[str] = set()
    while time.monotonic() < deadline and not {w.hostname for w in workers} <= listed:
        reply = requests.get(f"{base}/api/workers", params={"refresh": "1"}, auth=(USER, PASSWORD), timeout=20)
        assert reply.status_code == 200
        listed = set(reply.json())
        time.sleep(0.5)
    assert {w.hostname for w in workers} <= listed, listed
    # Prometheus metrics stay open for the scraper (protect them at the network level)
    metrics = requests.get(f"{base}/metrics", timeout=10)
    assert metrics.status_code == 200 and "flower_" in metrics.text
