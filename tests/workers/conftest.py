"""Real Celery worker processes for the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``celery -A workers worker`` process with its own node name and log file."""

    def __init__(self, name: str, config_path: str, log_dir: Path, queues: str | None = None, concurrency: int = 1):
        self.name, self.config_path, self.queues, self.concurrency = name, config_path, queues, concurrency
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def hostname(self) -> str:
        return f"{self.name}@artq-test"

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-n", self.hostname,
               "-c", str(self.concurrency), "-P", "prefork", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle"]
        if self.queues:
            cmd += ["-Q", self.queues]
        env = {**os.environ, "ARTQ_CONFIG": self.config_path, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group: the main worker and its pool children."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def wait_for_workers(broker_url: str, names: list[str], timeout_s: float = 60) -> None:
    probe = Celery(broker=broker_url)
    deadline = time.monotonic() + timeout_s
    seen: set[str] = set()
    try:
        while time.monotonic() < deadline:
            for reply in probe.control.ping(timeout=1.0) or []:
                seen.update(reply)
            if set(names) <= seen:
                return
        raise AssertionError(f"workers {sorted(set(names) - seen)} did not answer a ping within {timeout_s} s")
    finally:
        probe.close()


@pytest.fixture
def start_workers(tmp_path):
    """Factory: ``start_workers(config_path, broker_url, n=2, queues=None)`` → running workers."""
    started: list[WorkerProcess] = []

    def _start(config_path: str, broker_url: str, n: int = 2, queues: str | None = None) -> list[WorkerProcess]:
        workers = [WorkerProcess(f"w{len(started) + i + 1}", config_path, tmp_path, queues).start() for i in range(n)]
        started.extend(workers)
        try:
            wait_for_workers(broker_url, [w.hostname for w in workers])
        except AssertionError:
            for w in workers:
                print(w.output()[-3000:])
            raise
        return workers

    yield _start
    for w in started:
        w.stop()
