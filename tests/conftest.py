"""Shared fixtures: scratch MariaDB databases, a Redis database, migrated SQLite files.

Tests marked ``integration`` need real services. Outside CI they are skipped when a service is
down; under CI (``CI=true``) a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from artq.config import ApplicationSettings, Settings, load_settings
from artq.storage import migrate

MARIADB_ADMIN_URL = os.environ.get("ARTQ_TEST_MARIADB_URL", "mysql+mysqldb://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("ARTQ_TEST_REDIS_URL", "redis://127.0.0.1:6379")
ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_missing(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable ({exc}); start it with the command in README 'Running the tests'"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch) -> None:
    """Never touch the user's ~/.local/share/artq, ./artq.yml or ARTQ_* settings from a test."""
    for var in list(os.environ):
        if var.startswith("ARTQ_") and not var.startswith("ARTQ_TEST_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ARTQ_HOME", str(tmp_path_factory.mktemp("artq-home")))


@contextmanager
def scratch_database(prefix: str = "artq_test") -> Iterator[str]:
    """Create an empty MariaDB database named ``<prefix>_<random>``, yield its name, drop it after."""
    import sqlalchemy as sa

    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(MARIADB_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_missing("MariaDB", exc)
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh, empty MariaDB database (dropped afterwards); URL in ``mysql+mysqldb://`` form."""
    with scratch_database() as name:
        yield f"{MARIADB_ADMIN_URL}/{name}"


@pytest.fixture
def redis_db() -> Iterator[str]:
    """A Redis URL on a database number of its own, flushed before and after."""
    import redis

    number = 8 + secrets.randbelow(8)
    url = f"{REDIS_URL}/{number}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_missing("Redis", exc)
    yield url
    client.flushdb()
    client.close()


def make_settings(tmp_path, database_url: str | None = None, apps: list[str] | None = None, **source) -> Settings:
    settings = load_settings(env={"ARTQ_HOME": str(tmp_path)})
    if database_url:
        settings.database_url = database_url
    settings.models_dir = str(tmp_path / "models")
    if apps:
        settings.applications = [ApplicationSettings(name=a) for a in apps]
    for key, value in source.items():
        setattr(settings.source, key, value)
    return settings


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    """Embedded-default settings on a migrated SQLite file in ``tmp_path``."""
    settings = make_settings(tmp_path)
    migrate(settings.database_url)
    return settings


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def any_db_url(request, tmp_path) -> str:
    """A migrated database URL on each backend artq supports."""
    url = f"sqlite:///{tmp_path / 'artq.db'}" if request.param == "sqlite" else request.getfixturevalue("mariadb_url")
    migrate(url)
    return url


@pytest.fixture
def simulator():
    """The built-in AppDynamics simulator on a loopback port, with the default credentials."""
    from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
    from artq.sources.simulator import SimApp, SimulatorConfig, start_simulator

    cfg = SimulatorConfig(seed=7, applications=[SimApp(name="ABP", tiers=list(ApplicationSettings(name="ABP").tiers))],
                          client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        yield sim


def backfill_and_train(settings: Settings, days: int = 21):
    """Fill ``days`` of simulator history into ``settings.database_url`` and train a champion."""
    from datetime import timedelta

    from artq.pipeline import Runtime, train_step
    from artq.pipeline.ingest import backfill
    from artq.timeutil import last_complete_hour

    settings.forecast.training_days = days
    settings.forecast.min_training_hours = 24 * 14
    t0 = last_complete_hour()
    rt = Runtime(settings)
    try:
        backfill(rt, settings.applications[0], t0 - timedelta(days=days) + timedelta(hours=1), t0 + timedelta(hours=1))
        return t0, train_step(rt, settings.applications[0].name, tune=False, until=t0)
    finally:
        rt.close()


def write_config(path, settings: Settings) -> str:
    """Write ``settings`` as an artq.yml that worker processes load through ARTQ_CONFIG."""
    from dataclasses import asdict

    import yaml

    data = {
        "database_url": settings.database_url,
        "models_dir": settings.models_dir,
        "applications": [{"name": a.name, "tiers": a.tiers} for a in settings.applications],
        "source": {k: v for k, v in vars(settings.source).items() if v is not None},
        "celery": {k: v for k, v in vars(settings.celery).items() if v is not None},
        "forecast": vars(settings.forecast),
        "backfill_days": settings.backfill_days,
        "alerts": asdict(settings.alerts),
        "operations": asdict(settings.operations),
    }
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="session")
def _trained_template(tmp_path_factory):
    """Train once per session: a SQLite file with 21 days of simulator history and a champion."""
    from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
    from artq.sources.simulator import SimApp, SimulatorConfig, start_simulator

    cfg = SimulatorConfig(seed=7, applications=[SimApp(name="ABP", tiers=list(ApplicationSettings(name="ABP").tiers))],
                          client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    home = tmp_path_factory.mktemp("trained-template")
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        settings = make_settings(home, url=sim.url)
        migrate(settings.database_url)
        t0, out = backfill_and_train(settings)
        yield home, sim, t0, out


@pytest.fixture
def trained_sqlite(tmp_path, _trained_template):
    """A private copy of the trained template: ``(settings, origin, train result)``."""
    import shutil

    home, sim, t0, out = _trained_template
    for name in ("artq.db", "artq.db-wal", "artq.db-shm"):
        if (home / name).exists():
            shutil.copy2(home / name, tmp_path / name)
    shutil.copytree(home / "models", tmp_path / "models")
    settings = make_settings(tmp_path, url=sim.url)
    settings.forecast.training_days, settings.forecast.min_training_hours = 21, 24 * 14
    return settings, t0, out
