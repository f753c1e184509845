"""The canary scan (issue 13): plant a canary as every secret, drive the bad paths on real
processes, then look for the canaries in every log and output, every table, every Redis key and
Flower's API. None may be found.

Secrets planted: the MariaDB password (a real user of a scratch database), the Redis broker
password (a private ``redis-server --requirepass``), the controller's client secret and Basic
password (both wrong for the simulator), the webhook token (in the URL path) and signing secret,
and Flower's basic-auth password. Bad paths driven:

- a one-slash typo in the database URL: ``artq status`` (CLI) and a real ``celery -A workers
  worker`` that runs ``artq.model.train`` on it (the failure lands in the result backend and Flower);
- an unescaped ``@`` in the database password on the CLI;
- a wrong controller secret: ``artq run-cycle --celery`` through a second real worker (the failed
  run is stored in ``pipeline_runs``), and a wrong Basic password on ``artq backfill``;
- a failing webhook whose receiver echoes the request back in its 500 answer.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa

from tests.conftest import MARIADB_ADMIN_URL, ROOT, scratch_database
from tests.security.servers import free_port, http_server

pytestmark = pytest.mark.integration

TAG = secrets.token_hex(4)


def _canary(kind: str) -> str:
    return f"Cnry{kind}{secrets.token_hex(6)}"  # random halves: a partial leak is told apart too


CANARIES = {
    "database password": _canary("Db"),
    "redis password": _canary("Redis"),
    "controller client secret": _canary("ClientSecret"),
    "controller password": _canary("CtrlPw"),
    "webhook token": _canary("HookToken"),
    "webhook secret": _canary("HookSecret"),
    "flower password": _canary("Flower"),
}


def leaks(where: str, text: str) -> list[str]:
    """Every canary (or the second half of one) found in ``text``."""
    found = []
    for name, value in CANARIES.items():
        if value in text or value[len(value) // 2:] in text:
            found.append(f"{name} in {where}")
    return found


class Proc:
    """A process of ours with its output in a file; stopped by its process group."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path):
        self.log = log
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTQ_", "FLOWER_"))}
    return env | {"PYTHONUNBUFFERED": "1"}


@pytest.fixture
def private_redis(tmp_path):
    port = free_port()
    proc = Proc(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass",
                 CANARIES["redis password"], "--save", "", "--appendonly", "no"], base_env(), tmp_path / "redis.log")
    client = redis.Redis(port=port, password=CANARIES["redis password"])
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield port, client
    client.close()
    proc.stop()


@pytest.fixture
def canary_db():
    """A scratch database with a user whose password is the canary: (good URL, database name)."""
    with scratch_database("artq_canary") as name:
        user = f"cnry_{TAG}"
        admin = sa.create_engine(MARIADB_ADMIN_URL)
        pw = CANARIES["database password"]
        with admin.begin() as conn:
            for host in ("localhost", "127.0.0.1"):
                conn.execute(sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{pw}'"))
                conn.execute(sa.text(f"GRANT ALL ON `{name}`.* TO '{user}'@'{host}'"))
        try:
            yield f"mysql+mysqldb://{user}:{pw}@127.0.0.1:3306/{name}", name
        finally:
            with admin.begin() as conn:
                for host in ("localhost", "127.0.0.1"):
                    conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
            admin.dispose()


def artq(*args: str, env: dict[str, str], outputs: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "artq", *args], cwd=ROOT, env=base_env() | env, capture_output=True,
                         text=True, timeout=timeout)
    outputs[f"artq {' '.join(args)} [{len(outputs)}]"] = out.stdout + out.stderr
    return out


def wait_for(check, what: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")


def write_config(path: Path, **values) -> str:
    path.write_text(json.dumps(values))  # JSON is YAML
    return str(path)


def test_no_secret_leaks_anywhere(tmp_path, private_redis, canary_db, simulator):
    from celery import Celery

    port, rclient = private_redis
    good_db, db_name = canary_db
    pw_db, pw_redis = CANARIES["database password"], CANARIES["redis password"]
    typo_db = good_db.replace("mysql+mysqldb://", "mysql+mysqldb:/")
    broker, backend = f"redis://:{pw_redis}@127.0.0.1:{port}/0", f"redis://:{pw_redis}@127.0.0.1:{port}/1"
    outputs: dict[str, str] = {}
    procs: list[Proc] = []

    def hostile_receiver(request, body):  # echoes the path (token included) back in its error
        return 500, {}, f"cannot deliver to {request.path}: {request.headers.get('X-Artq-Signature')}".encode()

    with http_server(hostile_receiver) as (receiver, received):
        hook = f"{receiver}/services/T0/B0/{CANARIES['webhook token']}"
        common = {
            "models_dir": str(tmp_path / "models"),
            "applications": [{"name": "ABP"}],
            "celery": {"broker_url": broker, "result_backend": backend},
            "source": {"url": simulator.url, "client_secret": CANARIES["controller client secret"], "retries": 0},
            "alerts": {"webhook_url": hook, "webhook_secret": CANARIES["webhook secret"], "webhook_retries": 1},
        }
        good_cfg = write_config(tmp_path / "good.yml", database_url=good_db, **common)
        typo_cfg = write_config(tmp_path / "typo.yml", database_url=typo_db, **common)
        env_good = {"ARTQ_CONFIG": good_cfg, "ARTQ_HOME": str(tmp_path)}
        try:
            # -- the CLI: migrate, then a database URL typo and an unescaped '@'
            assert artq("init-db", env=env_good, outputs=outputs).returncode == 0
            assert artq("status", env={"ARTQ_CONFIG": typo_cfg}, outputs=outputs).returncode == 2
            at_url = good_db.replace(pw_db, pw_db[:6] + "@" + pw_db[6:])
            assert artq("status", env=env_good | {"ARTQ_DATABASE_URL": at_url}, outputs=outputs).returncode == 2
            typo_broker = broker.replace("redis://", "redis:/")
            assert artq("run-cycle", "--celery", env=env_good | {"ARTQ_BROKER_URL": typo_broker},
                        outputs=outputs).returncode == 2
            # -- a wrong controller password (Basic) on the CLI
            basic = {"ARTQ_SOURCE_CLIENT_SECRET": "", "ARTQ_SOURCE_USERNAME": "ops@customer1",
                     "ARTQ_SOURCE_PASSWORD": CANARIES["controller password"]}
            basic_cfg = write_config(tmp_path / "basic.yml", database_url=good_db,
                                     **(common | {"source": {"url": simulator.url, "retries": 0}}))
            out = artq("backfill", "--days", "1", env={"ARTQ_CONFIG": basic_cfg} | basic, outputs=outputs)
            assert out.returncode == 2 and "401" in out.stderr

            # -- real workers: one on the typo'd database URL, one on the good one; Flower on the broker
            celery = [sys.executable, "-m", "celery", "-A", "workers"]
            for name, cfg, queues in (("typo", typo_cfg, "train"), ("good", good_cfg, "fetch,predict,refresh")):
                procs.append(Proc(celery + ["worker", "-n", f"{name}@canary", "-Q", queues, "-c", "1", "-P", "prefork",
                                            "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
                                  base_env() | {"ARTQ_CONFIG": cfg}, tmp_path / f"worker-{name}.log"))
            flower_port = free_port()
            flower = f"http://127.0.0.1:{flower_port}"
            procs.append(Proc(celery + ["flower", "--address=127.0.0.1", f"--port={flower_port}",
                                        f"--db={tmp_path / 'flower.db'}"],
                              base_env() | {"ARTQ_CONFIG": good_cfg,
                                            "FLOWER_BASIC_AUTH": f"ops:{CANARIES['flower password']}"},
                              tmp_path / "flower.log"))
            probe = Celery(broker=broker, backend=backend)
            probe.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                              result_accept_content=["json"])
            wait_for(lambda: {"typo@canary", "good@canary"} <= {k for r in probe.control.ping(timeout=1) for k in r},
                     "both workers answering a ping")
            wait_for(lambda: requests.get(f"{flower}/healthcheck", timeout=2).status_code == 200, "flower up")

            result = probe.send_task("artq.model.train", args=["ABP"], queue="train", routing_key="train")
            result.get(timeout=120, propagate=False)
            assert result.state == "FAILURE" and "database_url" in str(result.result)
            out = artq("run-cycle", "--celery", "--timeout", "120", env=env_good, outputs=outputs, timeout=200)
            assert out.returncode != 0 and "401" in out.stdout + out.stderr

            # -- a failing webhook on an open alert (in this process, logs captured)
            fired = _fail_a_webhook(good_cfg, tmp_path / "notify.log")
            assert fired and received and "X-Artq-Signature" in received[0][2]

            # -- Flower's API, with the password (and refused without it)
            auth = ("ops", CANARIES["flower password"])
            assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
            pages = {"/api/workers?refresh=1": None, "/api/tasks": None, "/api/queues/length": None}
            wait_for(lambda: len(requests.get(f"{flower}/api/tasks", auth=auth, timeout=10).json()) >= 2,
                     "flower seeing the tasks")
            for task_id in requests.get(f"{flower}/api/tasks", auth=auth, timeout=10).json():
                pages[f"/api/task/info/{task_id}"] = None
            for page in pages:
                resp = requests.get(f"{flower}{page}", auth=auth, timeout=30)
                assert resp.status_code == 200, page
                outputs[f"flower {page}"] = resp.text
            probe.close()
        finally:
            for p in reversed(procs):
                p.stop()

    found: list[str] = []
    for where, text in outputs.items():
        found += leaks(where, text)
    for log in tmp_path.glob("*.log"):
        found += leaks(log.name, log.read_text(errors="replace"))
    tables = _dump_tables(db_name)
    assert "pipeline_runs" in tables and "401" in tables["pipeline_runs"]  # the failed run is recorded
    assert CANARIES["webhook token"][:6] in tables["alerts"]  # the alert row exists (prefix is harmless)
    for table, text in tables.items():
        found += leaks(f"table {table}", text)
    keys = _dump_redis(rclient)
    assert any("celery-task-meta" in k for k in keys)  # the result backend was used
    for key, text in keys.items():
        found += leaks(f"redis key {key}", text)
    assert not found, "canaries found:\n" + "\n".join(found)


def _fail_a_webhook(config: str, log_file: Path) -> bool:
    import logging
    from datetime import UTC, datetime

    from artq.config import load_settings
    from artq.dashboard.notify import notify_pending
    from artq.storage import open_database
    from artq.storage.models import Alert

    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    try:
        settings = load_settings(config, env={})
        db = open_database(settings.database_url)
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        with db.session() as s:
            # the key starts with the token's first 6 characters, so the scan can tell the row is there
            s.add(Alert(key=f"{CANARIES['webhook token'][:6]}:ABP", application="ABP", kind="forecast_breach",
                        status="open", opened_at=now, message="ART 900 ms >= threshold 500 ms", notify_attempts=0))
        with db.session() as s:
            out = notify_pending(s, settings, "ABP", now, sleep=lambda _s: None)
        db.dispose()
        return out["failed"] == 1
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def _dump_tables(db_name: str) -> dict[str, str]:
    engine = sa.create_engine(f"{MARIADB_ADMIN_URL}/{db_name}")
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            return {n: "\n".join(repr(tuple(row)) for row in conn.execute(sa.text(f"SELECT * FROM `{n}`"))) for n in names}
    finally:
        engine.dispose()


def _dump_redis(client: redis.Redis) -> dict[str, str]:
    out: dict[str, str] = {}
    for db in (int(name[2:]) for name in client.info("keyspace")):
        c = redis.Redis(connection_pool=client.connection_pool) if db == 0 else None
        c = client if db == 0 else redis.Redis(port=client.connection_pool.connection_kwargs["port"], db=db,
                                               password=CANARIES["redis password"])
        for key in c.scan_iter(count=500):
            kind = c.type(key).decode()
            value = {"string": lambda: c.get(key), "hash": lambda: c.hgetall(key), "list": lambda: c.lrange(key, 0, -1),
                     "set": lambda: c.smembers(key), "zset": lambda: c.zrange(key, 0, -1, withscores=True),
                     "stream": lambda: c.xrange(key)}.get(kind, lambda: b"")()
            out[f"{db}:{key.decode(errors='replace')}"] = repr(value)
    return out
