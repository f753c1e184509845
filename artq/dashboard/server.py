"""The web dashboard: one process, stdlib HTTP server, reads the database.

Routes: ``/`` (the page), ``/static/<file>`` (bundled JS/CSS, no CDN), ``/api/applications``,
``/api/app/<name>[?hours=N]`` and ``/healthz``. The page is a static file: every value reaches
the browser as JSON and is put into the page with ``textContent``, never as HTML, so an
application name or an error message cannot inject markup. A strict Content-Security-Policy
backs that up (scripts and styles only from this server).

Hostile clients. With ``dashboard.auth`` set, every route but ``/healthz`` needs HTTP Basic
credentials or a bearer token (compared in constant time; never logged). A client has
``dashboard.read_timeout_s`` to send its whole request (a slow or half-open connection is
closed then, whatever it trickles); at most ``dashboard.max_connections`` are served at once
and the rest are answered 503 at once. Malformed requests get a 4xx, never a 500 or a hang.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import mimetypes
import socket
import threading
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
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.slots = threading.BoundedSemaphore(settings.dashboard.max_connections)
        super().__init__(address, Handler)

    def handle_error(self, request, client_address) -> None:
        """A client that hung up is routine for a web server, not a traceback on stderr."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def process_request(self, request, client_address) -> None:
        # a connection beyond the cap gets a short 503 from the accepting thread, no thread of its own
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 23\r\n"
                                b"Connection: close\r\nRetry-After: 5\r\n\r\ntoo many connections\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "artq-dashboard"
    sys_version = ""
    head_only = False

    def setup(self) -> None:
        self.timeout = self.server.settings.dashboard.read_timeout_s  # each read of the socket
        super().setup()
        # ... and the whole request: a client trickling a byte at a time is cut off at the deadline
        self._request_read = threading.Event()
        self._deadline = threading.Timer(self.timeout, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self) -> None:
        if not self._request_read.is_set():
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish(self) -> None:
        self._deadline.cancel()
        try:
            super().finish()
        except OSError:  # the client went away
            pass

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self._request_read.set()
        if ok and self.request_version == "HTTP/0.9":  # no headers, no status line: not worth serving
            self.send_error(HTTPStatus.BAD_REQUEST, "HTTP/1.0 or later required")
            return False
        if ok and not hasattr(self, "do_" + self.command):
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"method {self.command} not allowed; use GET"},
                       extra={"Allow": "GET, HEAD"})
            return False
        return ok

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # the stdlib's malformed-request answers, as JSON with the security headers (never 5xx for a bad request)
        if code == HTTPStatus.NOT_IMPLEMENTED:
            code = HTTPStatus.METHOD_NOT_ALLOWED
        elif code >= 500:  # e.g. 505 for "HTTP/9.9": the client's request is what is wrong
            code = HTTPStatus.BAD_REQUEST
        self.close_connection = True
        self.request_version = "HTTP/1.0"  # always a status line, even for what looked like HTTP/0.9
        try:
            self._json(HTTPStatus(code), {"error": message or HTTPStatus(code).phrase})
        except (OSError, ValueError):
            pass

    def do_HEAD(self) -> None:
        self.head_only = True
        self.do_GET()

    def _authorised(self) -> bool:
        auth = self.server.settings.dashboard.auth
        if not (auth.username or auth.token):
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if auth.token and scheme.lower() == "bearer":
            return hmac.compare_digest(value.encode("utf-8", "surrogateescape"), auth.token.encode())
        if auth.username and scheme.lower() == "basic":
            try:
                given = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            expected = f"{auth.username}:{auth.password}".encode()
            return hmac.compare_digest(given, expected)
        return False

    def _challenge(self) -> None:
        auth = self.server.settings.dashboard.auth
        schemes = (['Basic realm="artq dashboard", charset="UTF-8"'] if auth.username else []) + (
            ['Bearer realm="artq dashboard"'] if auth.token else [])
        self._json(HTTPStatus.UNAUTHORIZED, {"error": "login required: HTTP Basic or a bearer token (dashboard.auth)"},
                   extra={"WWW-Authenticate": ", ".join(schemes)})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        try:
            if path != "/healthz" and not self._authorised():
                self._challenge()
            elif path in ("/", "/index.html"):
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
        except ConnectionError:  # the client went away mid-answer (closed tab, timeout): nothing to tell it
            self.close_connection = True
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

    def _json(self, status: HTTPStatus, body: Any, extra: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body, allow_nan=False).encode(), "application/json; charset=utf-8", extra=extra)

    def _send(self, status: HTTPStatus, data: bytes, ctype: str, cache: str = "no-store",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", cache)
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()
        if not self.head_only:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def _int_param(text: str) -> int:
    try:
        if len(text) > 12:
            raise ValueError(text)
        return int(text)
    except ValueError:
        raise InputError(f"`hours` must be a whole number of hours. Got {text!r}.") from None


def access_note(settings: Settings, host: str) -> str:
    """One line on who may read the page (never the credentials themselves)."""
    auth = settings.dashboard.auth
    kinds = [k for k, on in (("HTTP Basic", bool(auth.username)), ("bearer token", bool(auth.token))) if on]
    if kinds:
        return "login required (" + " or ".join(kinds) + ")"
    if host in ("127.0.0.1", "localhost", "::1"):
        return "no login (loopback only)"
    return "WARNING: no login and not on loopback: anyone who reaches this port reads the dashboard; set dashboard.auth"


def make_server(settings: Settings, host: str = "127.0.0.1", port: int = 8050) -> DashboardServer:
    """A ready server (not yet serving); ``port=0`` picks a free port (tests)."""
    db = open_database(settings.database_url)  # fails early, with a how-to-fix, on an unmigrated database
    try:
        return DashboardServer((host, port), settings, db)
    except OSError as exc:
        db.dispose()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}. Pick another --port.") from None
