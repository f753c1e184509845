"""Helpers for the dashboard tests: synthetic history and forecasts, a real local webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from artq.config import Settings
from artq.dashboard.refresh import refresh_dashboard
from artq.storage.db import Database, upsert
from artq.storage.models import Forecast, Observation

T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)  # a Monday 09:00 UTC
HOUR = timedelta(hours=1)


def seed_actuals(db: Database, app: str, start: datetime, end: datetime, value: Callable[[datetime], float] | float = 300.0) -> None:
    """Hourly main-server ART for hours in [start, end]."""
    rows, t = [], start
    while t <= end:
        v = value(t) if callable(value) else value
        rows.append(dict(application=app, server="main", metric="art", hour=t, value=float(v), fetched_at=t))
        t += HOUR
    with db.session() as s:
        upsert(s, Observation.__table__, rows, keys=("application", "server", "metric", "hour"))


def put_forecasts(db: Database, app: str, origin: datetime, values: Sequence[float], width: float = 40.0,
                  drivers: Sequence[Sequence] | None = None) -> None:
    """Six forecast rows at ``origin`` (interval value ± width), as the predict step stores them."""
    rows = [
        dict(application=app, origin=origin, horizon=h, target_hour=origin + h * HOUR, value=float(v),
             lower=float(v) - width, upper=float(v) + width, coverage=0.8, model_version="test-v1",
             drivers=[list(d) for d in (drivers or [["ABPServer3 load", 41.2], ["ART history", -3.0]])],
             created_at=origin + HOUR)
        for h, v in enumerate(values, start=1)
    ]
    with db.session() as s:
        upsert(s, Forecast.__table__, rows, keys=("application", "origin", "horizon"))


def refresh(db: Database, settings: Settings, app: str, origin: datetime) -> dict:
    with db.session() as s:
        return refresh_dashboard(s, settings, app, origin)


class Receiver:
    """A real HTTP server on loopback that records POSTed JSON bodies; can fail the first N requests."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []  # accepted (2xx) deliveries
        self.requests = 0
        self.fail_next = 0
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests += 1
                receiver.paths.append(self.path)
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"upstream broken")
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T0001/B0002/SECRETTOKEN123"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def db(sqlite_settings) -> Iterator[Database]:
    database = Database(sqlite_settings.database_url)
    yield database
    database.dispose()
