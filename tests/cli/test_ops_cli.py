"""`artq run-cycle --celery` says what it waits for; `artq workers` lists live workers (real Redis, real workers)."""

from __future__ import annotations

import re
import time

import pytest

from artq.storage import migrate
from tests.cli.test_parsing import artq
from tests.conftest import make_settings, write_config
from tests.workers.conftest import start_workers  # noqa: F401 - the fixture, used by name below

pytestmark = pytest.mark.integration


@pytest.fixture
def broker_config(tmp_path, redis_db):
    settings = make_settings(tmp_path)
    settings.source.simulate = True
    settings.celery.broker_url = settings.celery.result_backend = redis_db
    migrate(settings.database_url)
    return write_config(tmp_path / "artq.yml", settings)


def test_run_cycle_celery_prints_what_it_waits_for_while_no_worker_answers(tmp_path, broker_config):
    out = artq(tmp_path, "run-cycle", "--celery", "--timeout", "11", "--config", broker_config)
    waiting = [line for line in out.stderr.splitlines() if line.startswith("  … ")]
    assert len(waiting) >= 2, out.stderr
    assert all(re.fullmatch(r"  … \d+ s: .*a fetch worker \(queue fetch\)", line) for line in waiting), waiting
    assert out.returncode == 2 and out.stderr.splitlines()[-1].startswith("artq: error: the cycle of ABP for ")


def test_workers_lists_each_live_worker_with_its_queues(tmp_path, broker_config, redis_db, start_workers):  # noqa: F811
    workers = start_workers(broker_config, redis_db, n=2, queues="fetch,predict")
    started = time.monotonic()
    out = artq(tmp_path, "workers", "--timeout", "2", "--config", broker_config)
    print(f"artq workers --timeout 2 with 2 workers: {time.monotonic() - started:.1f} s (process start included)")
    assert out.returncode == 0, out.stderr
    for w in workers:
        assert w.hostname in out.stdout
    assert out.stdout.count("fetch,predict") == 2 and "2 live worker(s)" in out.stdout


def test_workers_says_how_to_start_one_when_none_answers(tmp_path, broker_config):
    out = artq(tmp_path, "workers", "--timeout", "0.5", "--config", broker_config)
    assert out.returncode == 1 and "no worker answered; start one with `celery -A workers worker" in out.stdout
