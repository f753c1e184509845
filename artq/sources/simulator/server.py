"""Real HTTP around the controller logic: a ThreadingHTTPServer, in a thread or in the foreground.

Hostile clients get 4xx, never a 500 or a hang: a ``Content-Length`` that is not a plain number
up to ``MAX_BODY`` is a 400 (and the connection closes, since the body cannot be skipped), and
every connection has a read timeout, so a slow or half-open client frees its thread. Faults are
decided only for the requests they target (authenticated ``/controller/rest/`` calls, and the
token endpoint with ``affect_token``): a health check or a bad password never uses up a
``fail_next`` counter meant for the client under test.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from artq.sources.simulator.api import REST_PREFIX, TOKEN_PATH, Controller, Response, text
from artq.sources.simulator.config import SimulatorConfig
from artq.sources.simulator.faults import Faults
from artq.sources.simulator.world import World
from artq.stopping import stop_on_interrupt_or_term

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # the token form is a few hundred bytes; GETs have no body
READ_TIMEOUT_S = 30.0  # per connection: waiting for a request line, headers or body


class _Handler(BaseHTTPRequestHandler):
    server_version = "AppDynamics-Controller-Simulator/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive, like a real controller behind a load balancer
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    controller: Controller  # set on the subclass made per server
    timeout = READ_TIMEOUT_S  # socket timeout of each connection (StreamRequestHandler applies it)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        raw_length = (self.headers.get("Content-Length") or "0").strip()
        if not raw_length.isdigit() or not raw_length.isascii() or int(raw_length) > MAX_BODY:
            self.close_connection = True  # the body's end is unknown: the connection cannot be reused
            return self._send(text(400, f"Content-Length must be a whole number of bytes up to {MAX_BODY}."))
        length = int(raw_length)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0].rstrip("/")
        is_token = path == TOKEN_PATH
        targeted = is_token or (path.startswith(REST_PREFIX.rstrip("/"))
                                and self.controller.auth.check(self.headers.get("Authorization")) is None)
        if not targeted:  # no fault for it: answered (404, 401, ...) without touching the counters
            return self._send(self._handle(method, body, malformed=False))
        faults = self.controller.faults
        verdict = faults.enter(is_token)
        try:
            if verdict.latency_s:
                time.sleep(verdict.latency_s)
            if verdict.status:
                resp = text(verdict.status, f"Injected fault: HTTP {verdict.status} (simulator).")
            else:
                resp = self._handle(method, body, verdict.malformed)
                if verdict.truncate and resp.status == 200:
                    resp.body = resp.body[: max(1, len(resp.body) // 2)]
            self._send(resp)
        finally:
            faults.leave()

    def _handle(self, method: str, body: bytes, malformed: bool) -> Response:
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            return self.controller.handle(method, self.path, headers, body, malformed)
        except Exception:  # a simulator bug must still answer, as a controller would
            log.exception("simulator failed on %s %s", method, self.path)
            return text(500, "Internal error in the simulator (see its log).")

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default backlog of 5 makes bursts of clients wait 1 s for SYN retries
    daemon_threads = True


class SimulatorServer:
    """A running simulator: ``url`` is the controller base; ``set_faults`` switches faults live."""

    def __init__(self, cfg: SimulatorConfig, host: str = "127.0.0.1", port: int = 0,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.controller = Controller(cfg)
        handler = type("Handler", (_Handler,), {"controller": self.controller, "timeout": read_timeout_s})
        self.httpd = _Server((host, port), handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    @property
    def world(self) -> World:
        """The world this server answers from (the truth to compare a client's results with)."""
        return self.controller.world

    def set_faults(self, faults: Faults) -> None:
        self.controller.faults.set(faults)

    def start(self) -> SimulatorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), name="artq-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        # at interpreter exit the daemon thread may be gone already: shutdown() would wait forever
        if self._thread and self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def start_simulator(cfg: SimulatorConfig, host: str = "127.0.0.1", port: int = 0,
                    read_timeout_s: float = READ_TIMEOUT_S) -> Iterator[SimulatorServer]:
    """Serve ``cfg`` in a daemon thread for the ``with`` block (port 0: any free port)."""
    sim = SimulatorServer(cfg, host, port, read_timeout_s).start()
    try:
        yield sim
    finally:
        sim.stop()


def serve(cfg: SimulatorConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Serve in the foreground until Ctrl-C (the ``artq simulator`` command)."""
    sim = SimulatorServer(cfg, host, port)
    log.info("AppDynamics controller simulator on %s (apps: %s)", sim.url,
             ", ".join(a.name for a in cfg.applications))
    stop_on_interrupt_or_term()
    try:
        sim.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.httpd.server_close()
