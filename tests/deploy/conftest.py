"""The compose stack under test: started by ``scripts/test-deploy.sh`` (``make test-deploy``).

These tests run only against a stack that script brought up; it names the Compose project and
its env file in ``ARTQ_DEPLOY_PROJECT`` / ``ARTQ_DEPLOY_ENV_FILE``. Without them (a plain
``make test``) every test here is deselected, not run: they need a Docker engine and take
minutes. Each container is its own host: the tests talk to it only through Docker (exec, logs,
kill, network disconnect) and to MariaDB and Redis over the Docker network, as another machine
would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = Path(__file__).resolve().parent
APP = "ABP"


def pytest_configure(config):
    config.addinivalue_line("markers", "deploy: needs the compose stack of `make test-deploy` (scripts/test-deploy.sh)")


def pytest_collection_modifyitems(config, items):
    deploy = [i for i in items if DEPLOY_DIR in Path(str(i.fspath)).parents]
    for item in deploy:
        item.add_marker(pytest.mark.deploy)
    if deploy and not os.environ.get("ARTQ_DEPLOY_PROJECT"):
        config.hook.pytest_deselected(items=deploy)
        items[:] = [i for i in items if i not in deploy]


def read_env_file(path: str | Path) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def run(argv: list[str], timeout: float = 120, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class LogWatch:
    """Follows one container's log from now on (``docker logs -f``), line by line, with arrival times."""

    def __init__(self, container: str):
        self.container = container
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self._proc = subprocess.Popen(["docker", "logs", "-f", "--since", since, container], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            with self._cond:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> float:
        """Monotonic time at which a line matching ``pattern`` arrived; fails after ``timeout`` s."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, line in self.lines:
                    if rx.search(line):
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(line for _, line in self.lines[-15:])
                    raise AssertionError(f"{self.container}: no log line matching {pattern!r} within {timeout:.0f} s; last lines:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def matching(self, pattern: str) -> list[tuple[float, str]]:
        rx = re.compile(pattern)
        with self._cond:
            return [(t, line) for t, line in self.lines if rx.search(line)]

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait(timeout=10)


@dataclass
class Stack:
    project: str
    env_file: str
    files: list[str]
    env: dict[str, str] = field(default_factory=dict)

    # ---- docker compose and docker ------------------------------------------------------
    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        argv = ["docker", "compose", "-p", self.project, "--env-file", self.env_file]
        for f in self.files:
            argv += ["-f", f]
        return run([*argv, *args], timeout=timeout, check=check, cwd=ROOT)

    def containers(self, service: str) -> list[str]:
        """Names of the service's containers, replica 1 first."""
        out = run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}",
                   "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}"]).stdout.split()
        return sorted(out, key=lambda n: int(n.rsplit("-", 1)[1]))

    def container(self, service: str, index: int = 1) -> str:
        names = self.containers(service)
        assert len(names) >= index, f"service {service} has {len(names)} containers, not {index}"
        return names[index - 1]

    def exec(self, service: str, *argv: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", service, *argv, timeout=timeout, check=check)

    def inspect(self, container: str, template: str) -> str:
        return run(["docker", "inspect", "-f", template, container]).stdout.strip()

    def ip(self, container: str) -> str:
        return self.inspect(container, "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").split()[0]

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    def wait_healthy(self, container: str, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.inspect(container, "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}") == "running healthy":
                return time.monotonic() - start
            time.sleep(1)
        raise AssertionError(f"{container} not healthy within {timeout} s")

    def wait_workers(self, expected: int, timeout: float = 120) -> None:
        """Until ``expected`` workers answer a ping through the broker."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            proc = self.exec("worker-refresh", "celery", "-A", "workers", "inspect", "ping", "--timeout", "5", "--json",
                             check=False, timeout=60)
            try:
                seen = len(json.loads(proc.stdout.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                seen = 0
            if seen >= expected:
                return
            time.sleep(2)
        raise AssertionError(f"only {seen} of {expected} workers answer a ping after {timeout} s")

    # ---- MariaDB and Redis, over the Docker network -------------------------------------
    def sql(self, query: str, args: tuple = ()) -> list[tuple]:
        import MySQLdb

        deadline = time.monotonic() + 60
        while True:
            try:
                conn = MySQLdb.connect(host=self.ip(self.container("mariadb")), user=self.env["MARIADB_USER"],
                                       password=self.env["MARIADB_PASSWORD"], database=self.env["MARIADB_DATABASE"],
                                       connect_timeout=5, charset="utf8mb4")
                break
            except MySQLdb.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        try:
            cur = conn.cursor()
            cur.execute(query, args)
            return list(cur.fetchall())
        finally:
            conn.close()

    def redis(self, db: int = 0):
        import redis

        return redis.Redis(host=self.ip(self.container("redis")), port=6379, db=db, password=self.env["REDIS_PASSWORD"],
                           socket_timeout=10)

    # ---- cycles ---------------------------------------------------------------------------
    def forecasts(self, origin: datetime) -> list[tuple]:
        """(horizon, model_version) of every stored forecast row of ``origin``."""
        return self.sql("SELECT horizon, model_version FROM forecasts WHERE application=%s AND origin=%s ORDER BY horizon",
                        (APP, origin.replace(tzinfo=None)))

    def run_status(self, origin: datetime) -> list[tuple]:
        return self.sql("SELECT status, attempts, error FROM pipeline_runs WHERE application=%s AND origin=%s",
                        (APP, origin.replace(tzinfo=None)))

    def run_cycle(self, origin: datetime, timeout: float = 300) -> subprocess.Popen:
        """``artq run-cycle --celery`` from a container, in the background."""
        argv = ["docker", "compose", "-p", self.project, "--env-file", self.env_file]
        for f in self.files:
            argv += ["-f", f]
        argv += ["exec", "-T", "worker-refresh", "artq", "run-cycle", "--app", APP, "--origin", iso(origin), "--celery",
                 "--timeout", str(int(timeout))]
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def predict_runs(self, watches: dict[str, LogWatch], origin: datetime) -> dict[str, list[int]]:
        """Horizons of ``origin`` each predict container reported done, from its own log."""
        stamp = origin.strftime("%Y-%m-%dT%H:%M:%S")
        out = {}
        for name, watch in watches.items():
            out[name] = [int(m.group(1)) for _, line in watch.matching(r"artq\.cycle\.predict\[.*\] succeeded.*" + stamp)
                         for m in [re.search(r"'horizon': (\d+)", line)] if m and f"'{APP}'" in line]
        return out


def iso(origin: datetime) -> str:
    return origin.strftime("%Y-%m-%dT%H:00Z")


def origin_hours_ago(k: int) -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=k)


def wait_done(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"run-cycle did not finish within {timeout} s:\n{out[-3000:]}") from None
    return proc.returncode, out


class Figures:
    """Per fault: cycles run, forecasts lost, duplicated, time to recover. Printed and saved as JSON."""

    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        self.rows: list[dict] = []

    def record(self, **row) -> None:
        self.rows.append(row)
        print("FAULT", json.dumps(row))
        if self.path:
            self.path.write_text(json.dumps(self.rows, indent=2) + "\n")


@pytest.fixture(scope="session")
def stack() -> Stack:
    project = os.environ["ARTQ_DEPLOY_PROJECT"]
    env_file = os.environ["ARTQ_DEPLOY_ENV_FILE"]
    files = [f for f in os.environ.get("ARTQ_DEPLOY_COMPOSE_FILES", "docker-compose.yml").split(":") if f]
    return Stack(project=project, env_file=env_file, files=files, env=read_env_file(env_file))


@pytest.fixture(scope="session")
def figures() -> Figures:
    return Figures(os.environ.get("ARTQ_DEPLOY_FIGURES"))


@pytest.fixture
def predict_logs(stack):
    for name in stack.containers("worker-predict"):  # a test that failed may have left one stopped
        if stack.inspect(name, "{{.State.Running}}") != "true":
            run(["docker", "start", name])
            stack.wait_workers(5, timeout=180)
    watches = {name: LogWatch(name) for name in stack.containers("worker-predict")}
    yield watches
    for w in watches.values():
        w.close()
