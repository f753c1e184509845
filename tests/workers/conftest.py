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

    def __init__(self, name: str, config_path: str, log_dir: Path, queues: str | None = None, concurrency: int = 1,
                 env: dict | None = None, include: str | None = None):
        self.name, self.config_path, self.queues, self.concurrency = name, config_path, queues, concurrency
        self.env, self.include = env or {}, include
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
        if self.include:
            cmd += ["--include", self.include]
        env = {**os.environ, "ARTQ_CONFIG": self.config_path, "PYTHONUNBUFFERED": "1", **self.env}
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
            try:
                replies = probe.control.ping(timeout=1.0) or []
            except probe.connection_for_read().connection_errors:  # Redis restarted under us: ask again
                time.sleep(0.5)
                continue
            for reply in replies:
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

    def _start(config_path: str, broker_url: str, n: int = 2, queues: str | None = None, env: dict | None = None,
               include: str | None = None, prefix: str = "w") -> list[WorkerProcess]:
        workers = [WorkerProcess(f"{prefix}{len(started) + i + 1}", config_path, tmp_path, queues, env=env,
                                 include=include).start() for i in range(n)]
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


# -- a trained database, cloned per test ----------------------------------------------------------

FAULTS = "tests.workers.faults"
DONE = ("succeeded", "partial", "failed")


@pytest.fixture(scope="session")
def session_simulator():
    """The simulator for the whole session (its world is deterministic: every test sees the same data)."""
    from artq.config import (
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        ApplicationSettings,
    )
    from artq.sources.simulator import SimApp, SimulatorConfig, start_simulator

    cfg = SimulatorConfig(seed=7, applications=[SimApp(name="ABP", tiers=list(ApplicationSettings(name="ABP").tiers))],
                          client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        yield sim


def _admin():
    import sqlalchemy as sa

    from tests.conftest import MARIADB_ADMIN_URL

    return sa.create_engine(MARIADB_ADMIN_URL)


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory, session_simulator):
    """A MariaDB database with 21 days of simulator history and a champion model, built once per session."""
    from artq.storage import migrate
    from tests.conftest import (
        MARIADB_ADMIN_URL,
        backfill_and_train,
        make_settings,
        scratch_database,
    )

    with scratch_database("artq_tmpl") as name:
        home = tmp_path_factory.mktemp("template")
        settings = make_settings(home, database_url=f"{MARIADB_ADMIN_URL}/{name}", url=session_simulator.url)
        migrate(settings.database_url)
        t0, trained = backfill_and_train(settings)
        assert trained["promoted"]
        yield name, t0, settings.models_dir


def clone_database(template: str, name: str) -> None:
    import sqlalchemy as sa

    admin = _admin()
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            for (table,) in conn.execute(sa.text(f"SHOW TABLES FROM `{template}`")).all():
                conn.execute(sa.text(f"CREATE TABLE `{name}`.`{table}` LIKE `{template}`.`{table}`"))
                conn.execute(sa.text(f"INSERT INTO `{name}`.`{table}` SELECT * FROM `{template}`.`{table}`"))
    finally:
        admin.dispose()


def drop_database(name: str) -> None:
    import sqlalchemy as sa

    admin = _admin()
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        admin.dispose()


class CycleEnv:
    """One test's world: a clone of the trained database, a Redis database, config files, helpers."""

    def __init__(self, tmp_path: Path, db_name: str, t0, models_dir: str, redis_url: str, simulator_url: str):
        from tests.conftest import MARIADB_ADMIN_URL, make_settings

        self.tmp_path, self.db_name, self.t0, self.redis_url = tmp_path, db_name, t0, redis_url
        self.db_url = f"{MARIADB_ADMIN_URL}/{db_name}"
        self.settings = make_settings(tmp_path, database_url=self.db_url, url=simulator_url)
        self.settings.models_dir = models_dir
        self.settings.celery.broker_url = self.settings.celery.result_backend = redis_url
        self.mark_dir = tmp_path / "marks"
        self.mark_dir.mkdir()
        self._db = None
        self.app = self.rt = None

    def write_config(self, name: str = "artq.yml", database_url: str | None = None, **operations) -> str:
        import yaml

        from tests.conftest import write_config

        path = self.tmp_path / name
        write_config(path, self.settings)
        data = yaml.safe_load(path.read_text())
        if database_url:
            data["database_url"] = database_url
        data["operations"] = {"visibility_timeout_s": 6, "lease_renew_s": 1, **operations}
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def fault_env(self, **values) -> dict:
        env = {"ARTQ_TEST_MARK_DIR": str(self.mark_dir)}
        env.update({f"ARTQ_TEST_{k.upper()}": str(v) for k, v in values.items()})
        return env

    # -- the test process as a client of the broker -----------------------------------------------
    def use_broker(self, config_path: str):
        """A client app of the test's broker, database and settings (the test process sends, workers run)."""
        from artq.config import load_settings
        from artq.pipeline import Runtime
        from workers.factory import create_app

        self.close_client()
        settings = load_settings(config_path)
        self.app, self.rt = create_app(settings), Runtime(settings)
        return self.app

    def trigger(self, origin, trigger: str = "test", applications=("ABP",)):
        from workers.canvas import start_cycles

        return start_cycles(self.app, self.rt, list(applications), origin, trigger)["results"]

    def close_client(self):
        if getattr(self, "app", None) is not None:
            self.app.close()
            self.rt.close()
            self.app = self.rt = None

    # -- the database, read directly ------------------------------------------------------------
    @property
    def db(self):
        from artq.storage import open_database

        if self._db is None:
            self._db = open_database(self.db_url)
        return self._db

    def run(self, origin, application: str = "ABP"):
        from artq.storage import repository as repo

        with self.db.session() as s:
            return repo.get_run(s, application, origin)

    def wait_for_run_of(self, application: str, origin, timeout_s: float = 120, workers=()):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(origin, application)
            if run is not None and run.status in DONE:
                return run
            time.sleep(0.3)
        logs = "".join(f"\n--- {w.name}\n" + w.output()[-4000:] for w in workers)
        raise AssertionError(f"run of {application} {origin} not done after {timeout_s} s{logs}")

    def forecasts(self, origin) -> list[int]:
        from sqlalchemy import select

        from artq.storage.models import Forecast

        with self.db.session() as s:
            return list(s.scalars(select(Forecast.horizon).where(Forecast.origin == origin).order_by(Forecast.horizon)))

    def count(self, model, *where) -> int:
        from sqlalchemy import func, select

        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(model).where(*where))

    def wait_for_run(self, origin, timeout_s: float = 120, statuses=DONE, workers=()):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.run(origin)
            if run is not None and run.status in statuses:
                return run
            time.sleep(0.3)
        run = self.run(origin)
        logs = "".join(f"\n--- {w.name}\n" + w.output()[-4000:] for w in workers)
        raise AssertionError(f"run of {origin} still {run.status if run else 'missing'} after {timeout_s} s{logs}")

    def marks(self, step: str = "", origin=None) -> list[str]:
        prefix = f"{step}-{origin.isoformat()[:13]}" if origin is not None else step
        return sorted(p.name for p in self.mark_dir.iterdir() if p.name.startswith(prefix))

    def wait_for_mark(self, step: str, origin, host: str | None = None, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [m for m in self.marks(step, origin) if host is None or host in m]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {step} of {origin} started{' on ' + host if host else ''} within {timeout_s} s")

    def close(self):
        if self._db is not None:
            self._db.dispose()
        self.close_client()


@pytest.fixture
def cycle_env(tmp_path, trained_template, redis_db, session_simulator):
    import secrets

    template, t0, models_dir = trained_template
    name = f"artq_test_{secrets.token_hex(4)}"
    clone_database(template, name)
    env = CycleEnv(tmp_path, name, t0, models_dir, redis_db, session_simulator.url)
    try:
        yield env
    finally:
        env.close()
        drop_database(name)


@pytest.fixture
def start_beat(tmp_path):
    """Factory: ``start_beat(config_path)`` → a running ``celery -A workers beat`` process."""
    procs: list[subprocess.Popen] = []

    def _start(config_path: str) -> Path:
        log = tmp_path / "beat.log"
        cmd = [sys.executable, "-m", "celery", "-A", "workers", "beat", "-s", str(tmp_path / "beat-schedule"),
               "--loglevel", "INFO"]
        env = {**os.environ, "ARTQ_CONFIG": config_path, "PYTHONUNBUFFERED": "1"}
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                      start_new_session=True))
        return log

    yield _start
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
