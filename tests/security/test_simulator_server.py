"""Finding 7 (simulator half): hostile HTTP gets 4xx, slow clients time out, faults hit their target."""

from __future__ import annotations

import base64
import socket

import pytest
import requests

from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ApplicationSettings
from artq.sources.simulator import Faults, SimApp, SimulatorConfig, start_simulator

APPS = "/controller/rest/applications?output=JSON"


@pytest.fixture
def sim():
    cfg = SimulatorConfig(seed=3, applications=[SimApp(name="ABP", tiers=list(ApplicationSettings(name="ABP").tiers))],
                          client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
                          username="ops@customer1", password="pw")
    with start_simulator(cfg, read_timeout_s=1.0) as server:
        yield server


def raw(sim, request: bytes, read_timeout_s: float = 20.0) -> bytes:
    """Send raw bytes; return everything the server sends before it closes (or the timeout)."""
    with socket.create_connection((sim.host, sim.port), timeout=read_timeout_s) as s:
        s.sendall(request)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except TimeoutError:
            out += b"<client timed out>"
        return out


@pytest.mark.parametrize("credentials", ["ñoño@customer1:pässwörd", "ops@customer1:pw\u00e9"])
def test_non_ascii_basic_credentials_are_a_401_not_a_500(sim, credentials):
    token = base64.b64encode(credentials.encode()).decode()
    resp = requests.get(sim.url + APPS, headers={"Authorization": f"Basic {token}"}, timeout=10)
    assert resp.status_code == 401


def test_non_ascii_client_secret_is_a_401_not_a_500(sim):
    resp = requests.post(sim.url + "/controller/api/oauth/access_token", timeout=10,
                         data={"grant_type": "client_credentials", "client_id": "artq@customer1",
                               "client_secret": "sécret"})
    assert resp.status_code == 401


def test_raw_non_ascii_bytes_in_the_header_are_a_401(sim):
    out = raw(sim, b"GET " + APPS.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Basic \xc3\xb1\xff\r\n"
                   b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 401")


@pytest.mark.parametrize("length", [b"-1", b"-99999", b"99999999999999999999", b"12abc", b"\xd9\xa3"])
def test_bad_content_length_is_a_400_never_a_hang(sim, length):
    out = raw(sim, b"POST /controller/api/oauth/access_token HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                   + b"\r\n\r\ngrant_type=client_credentials")
    assert out.startswith(b"HTTP/1.1 400") and b"Content-Length must be a whole number" in out
    assert not out.endswith(b"<client timed out>")  # the server closed the connection itself


def test_a_half_open_client_is_disconnected_by_the_read_timeout(sim):
    out = raw(sim, b"GET /controller/rest/applications HTTP/1.1\r\nHost: x\r\n")  # headers never end
    assert not out.endswith(b"<client timed out>")  # the server hung up first (its timeout: 1 s)
    out = raw(sim, b"")  # connects, sends nothing
    assert out == b""


def test_a_body_that_never_arrives_is_cut_by_the_read_timeout(sim):
    out = raw(sim, b"POST /controller/api/oauth/access_token HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nab")
    assert not out.endswith(b"<client timed out>")


def test_fault_counters_are_used_only_by_the_requests_they_target(sim):
    sim.set_faults(Faults(fail_next=2, error_status=503))
    good = ("ops@customer1", "pw")
    assert requests.get(sim.url + "/", timeout=10).status_code == 404  # a health check
    assert requests.get(sim.url + APPS, auth=("ops@customer1", "wrong"), timeout=10).status_code == 401
    assert requests.get(sim.url + APPS, timeout=10).status_code == 401  # no credentials
    assert requests.post(sim.url + "/controller/api/oauth/access_token", timeout=10,
                         data={"grant_type": "client_credentials", "client_id": DEFAULT_CLIENT_ID,
                               "client_secret": DEFAULT_CLIENT_SECRET}).status_code == 200  # token: not targeted
    statuses = [requests.get(sim.url + APPS, auth=good, timeout=10).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]  # both faults reached the client they were meant for
