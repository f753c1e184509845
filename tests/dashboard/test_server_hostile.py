"""The dashboard server against hostile clients, on a real server on 127.0.0.1: login, timeouts, bad requests."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from artq.dashboard.server import make_server
from tests.dashboard.conftest import HOUR, T0, put_forecasts, refresh, seed_actuals

TOKEN = "t0ken-" + "c" * 24
PASSWORD = "pässwörd-canary-91"


def _serve(settings):
    server = make_server(settings, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def make(sqlite_settings, db):
    seed_actuals(db, "ABP", T0 - 8 * 24 * HOUR, T0, 300.0)
    put_forecasts(db, "ABP", T0, [320, 340, 360, 380, 300, 300])
    refresh(db, sqlite_settings, "ABP", T0)
    servers = []

    def start(**dashboard):
        for key, value in dashboard.items():
            target = sqlite_settings.dashboard.auth if key in ("username", "password", "token") else sqlite_settings.dashboard
            setattr(target, key, value)
        servers.append(_serve(sqlite_settings))
        return servers[-1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
        server.db.dispose()


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def raw(server, data: bytes) -> bytes:
    """Send raw bytes, read the whole answer (the server closes the connection)."""
    with socket.create_connection(server.server_address[:2], timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_half_open_clients_do_not_block_others_and_are_closed_after_the_timeout(make):
    server = make(read_timeout_s=1.0)
    held = []
    for _ in range(50):
        sock = socket.create_connection(server.server_address[:2], timeout=15)
        sock.sendall(b"GET /api/applications HTTP/1.1\r\nHost: x")  # never finishes its headers
        held.append(sock)
    try:
        status, _, body = get(server.url + "api/app/ABP")
        assert status == 200 and b'"origin": "2026-11-23T09:00:00Z"' in body
        for sock in held:  # each is closed by the server (EOF), none answered as if the request were whole
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
            assert not data.startswith(b"HTTP/1.0 200")
    finally:
        for sock in held:
            sock.close()
    assert get(server.url + "healthz")[0] == 200


def test_a_client_trickling_bytes_is_cut_off_at_the_request_deadline(make):
    server = make(read_timeout_s=1.0)
    request = b"GET /api/applications HTTP/1.0\r\n" + b"X-Slow: " + b"a" * 60 + b"\r\n\r\n"
    sent = 0
    with socket.create_connection(server.server_address[:2], timeout=15) as sock:
        try:
            for i in range(len(request)):
                sock.sendall(request[i:i + 1])
                sent += 1
                time.sleep(0.1)  # each byte well inside the per-read timeout; the whole request is not
        except OSError:
            pass
    assert sent < len(request), "the server kept reading a request trickled for longer than its deadline"


def test_connections_beyond_the_cap_get_503_at_once(make):
    server = make(read_timeout_s=5.0, max_connections=3)
    held = [socket.create_connection(server.server_address[:2], timeout=10) for _ in range(3)]
    try:
        for sock in held:
            sock.sendall(b"GET / HTTP/1.0\r\n")
        time.sleep(0.2)  # let the server accept them
        answer = raw(server, b"GET /healthz HTTP/1.0\r\n\r\n")
        assert status_of(answer) == 503
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"\x00\xff\xfe garbage\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 400),
        (b"GET\r\n\r\n", 400),
        (b"POST /api/applications HTTP/1.0\r\nContent-Length: -5\r\n\r\n", 405),
        (b"BREW / HTTP/1.0\r\n\r\n", 405),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.0\r\n\r\n", 414),
        (b"GET /api/app/%ff%fe%00 HTTP/1.0\r\n\r\n", 404),
        (b"GET /api/app/ABP?hours=999999999999999999999999 HTTP/1.0\r\n\r\n", 400),
        (b"GET /api/app/ABP?hours=-1 HTTP/1.0\r\n\r\n", 400),
        (b"GET / HTTP/1.0\r\nX-Bad: " + b"b" * 70000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_get_a_4xx(make, request_bytes, expected):
    server = make()
    answer = raw(server, request_bytes)
    assert status_of(answer) == expected, answer[:200]
    assert get(server.url + "healthz")[0] == 200  # and the server still serves


def test_head_is_answered_without_a_body(make):
    server = make()
    answer = raw(server, b"HEAD /api/applications HTTP/1.0\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status_of(answer) == 200 and body == b"" and b"Content-Length:" in head


def _basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_login_by_basic_auth_or_bearer_token(make, caplog):
    caplog.set_level(logging.DEBUG)
    server = make(username="analyst", password=PASSWORD, token=TOKEN)
    status, headers, _ = get(server.url + "api/applications")
    assert status == 401 and 'Basic realm="artq dashboard"' in headers["WWW-Authenticate"]
    assert get(server.url)[0] == 401 and get(server.url + "static/dashboard.js")[0] == 401
    assert get(server.url + "healthz")[0] == 200  # load balancers need no login
    assert get(server.url + "api/applications", _basic("analyst", PASSWORD))[0] == 200
    assert get(server.url, _basic("analyst", PASSWORD))[0] == 200
    assert get(server.url + "api/applications", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    for bad in (_basic("analyst", "wrong"), _basic("other", PASSWORD), {"Authorization": "Basic %%%not-base64"},
                {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": "Bearer"}, {"Authorization": "Digest abc"}):
        assert get(server.url + "api/applications", bad)[0] == 401, bad
    answer = raw(server, b"GET /api/applications HTTP/1.0\r\nAuthorization: Basic \xff\xfe\r\n\r\n")
    assert status_of(answer) == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in logged and TOKEN not in logged


def test_login_settings_come_from_the_environment_and_are_checked(tmp_path):
    from artq.config import load_settings
    from artq.errors import ConfigError

    env = {"ARTQ_HOME": str(tmp_path), "ARTQ_DASHBOARD_USERNAME": "analyst", "ARTQ_DASHBOARD_PASSWORD": PASSWORD,
           "ARTQ_DASHBOARD_TOKEN": TOKEN}
    auth = load_settings(env=env).dashboard.auth
    assert (auth.username, auth.password, auth.token) == ("analyst", PASSWORD, TOKEN)
    with pytest.raises(ConfigError, match="needs both username and password"):
        load_settings(env={"ARTQ_HOME": str(tmp_path), "ARTQ_DASHBOARD_USERNAME": "analyst"})
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(env={"ARTQ_HOME": str(tmp_path), "ARTQ_DASHBOARD_TOKEN": "short"})
