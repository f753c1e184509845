"""The web dashboard: one process, stdlib HTTP server, reads the database.

Routes: ``/`` (the page), ``/static/<file>`` (bundled JS/CSS, no CDN), ``/api/applications``,
``/api/app/<name>[?hours=N]`` and ``/healthz``. The page is a static file: every value reaches
the browser as JSON and is put into the page with ``textContent``, never as HTML, so an
application name or an error message cannot inject markup. A strict Content-Security-Policy
backs that up (scripts and styles only from this server).
"""

from __future__ import annotations

import json
import logging
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from artq.config import Settings
from artq.dashboard import queries
from artq.errors import ArtqError, ConfigError, InputError
from artq.storage.db import Database, open_database

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGE = HERE / "templates" / "index.html"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "artq-dashboard"
    sys_version = ""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path.startswith("/static/"):
                self._static(path[len("/static/"):])
            elif path == "/healthz":
                self._json(HTTPStatus.OK, {"ok": True})
            elif path == "/api/applications":
                with self.server.db.session() as s:
                    self._json(HTTPStatus.OK, {"applications": queries.applications(s, self.server.settings)})
            elif path.startswith("/api/app/"):
                name = unquote(path[len("/api/app/"):])
                hours = _int_param(parse_qs(parts.query).get("hours", ["72"])[0])
                with self.server.db.session() as s:
                    self._json(HTTPStatus.OK, queries.application_view(s, self.server.settings, name, hours))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
        except ConfigError as exc:  # unknown application
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except InputError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except ArtqError as exc:
            self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        except Exception:  # a bug must not kill the server thread silently, nor leak a traceback to the page
            log.exception("dashboard: %s failed", path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error; see the dashboard log"})

    def _static(self, name: str) -> None:
        # only files directly in static/: no sub-paths, so no way out of the directory
        target = STATIC / name
        if "/" in name or "\\" in name or name.startswith(".") or not target.is_file():
            self._json(HTTPStatus.NOT_FOUND, {"error": "no such file"})
            return
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(HTTPStatus.OK, target.read_bytes(), ctype, cache="public, max-age=3600")

    def _json(self, status: HTTPStatus, body: Any) -> None:
        self._send(status, json.dumps(body, allow_nan=False).encode(), "application/json; charset=utf-8")

    def _send(self, status: HTTPStatus, data: bytes, ctype: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def _int_param(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"`hours` must be a whole number of hours. Got {text!r}.") from None


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """A ready server (not yet serving); ``port=0`` picks a free port (tests)."""
    db = open_database(settings.database_url)  # fails early, with a how-to-fix, on an unmigrated database
    try:
        return DashboardServer((host, port), settings, db)
    except OSError as exc:
        db.dispose()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port.") from None
