"""Finding 2: the AppDynamics client keeps its secret: no redirects, no silent http, TLS said loudly."""

from __future__ import annotations

import logging
import warnings

import pytest

from artq.errors import ConfigError, SourceError
from artq.sources.appdynamics import AppDynamicsClient
from tests.security.servers import http_server, self_signed_cert, token_ok

SECRET = "CanaryClientSecret4411"


def client(url: str, **opts) -> AppDynamicsClient:
    return AppDynamicsClient(url, client_id="artq@customer1", client_secret=SECRET, retries=0, **opts)


def test_token_request_does_not_follow_a_redirect_to_another_host():
    with http_server(lambda r, b: (200, {}, b"{}")) as (elsewhere, stolen):
        target = elsewhere.replace("127.0.0.1", "localhost")

        def redirect(request, body):
            return 307, {"Location": f"{target}{request.path}"}, b""

        with http_server(redirect) as (url, seen):
            with pytest.raises(SourceError) as err:
                client(url).applications()
    assert "307" in str(err.value) and "localhost" in str(err.value) and "not followed" in str(err.value)
    assert seen and seen[0][0] == "POST"  # the controller was asked once...
    assert stolen == []  # ...and the other host received nothing, secret or not


def test_metric_requests_do_not_follow_redirects_either():
    def handle(request, body):
        if request.command == "POST":
            return token_ok(request, body)
        return 302, {"Location": "http://localhost:1/elsewhere"}, b""

    with http_server(handle) as (url, _):
        with pytest.raises(SourceError, match="302 \\(a redirect to localhost, not followed\\)"):
            client(url).applications()


def test_plain_http_with_credentials_is_refused_unless_allowed(caplog):
    with pytest.raises(ConfigError) as err:
        client("http://controller.example.invalid:8090")
    assert "allow_insecure_http" in str(err.value) and "ARTQ_SOURCE_ALLOW_INSECURE_HTTP" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="artq.sources.appdynamics"):
        client("http://controller2.example.invalid", allow_insecure_http=True)
        client("http://controller2.example.invalid", allow_insecure_http=True)
    lines = [r.getMessage() for r in caplog.records if "INSECURE" in r.getMessage()]
    assert len(lines) == 1 and "controller2.example.invalid" in lines[0] and "unencrypted" in lines[0]


def test_loopback_http_is_allowed_for_the_simulator():
    assert client("http://127.0.0.1:9").base_url == "http://127.0.0.1:9"


def test_a_self_signed_controller_works_only_with_its_ca_bundle(tmp_path):
    cert, key = self_signed_cert(tmp_path)
    with http_server(token_ok, tls=(cert, key)) as (url, _):
        with pytest.raises(SourceError, match="source.ca_bundle"):
            client(url).applications()
        assert client(url, ca_bundle=str(cert)).applications()[0]["name"] == "ABP"
    with pytest.raises(ConfigError, match="`source.ca_bundle` .* is not a file"):
        client(url, ca_bundle=str(tmp_path / "missing.pem"))


def test_verify_tls_off_warns_once_per_process_not_per_request(tmp_path, caplog):
    cert, key = self_signed_cert(tmp_path)
    with http_server(token_ok, tls=(cert, key)) as (url, log), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.WARNING, logger="artq.sources.appdynamics"):
            for _ in range(2):
                c = client(url, verify_tls=False)
                for _ in range(3):
                    c.applications()
    assert len(log) >= 6  # the requests were made over TLS
    lines = [r.getMessage() for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(lines) == 1 and url in lines[0]
    assert [w for w in caught if "Unverified HTTPS" in str(w.message)] == []


def test_allow_insecure_http_comes_from_the_environment_as_a_boolean(tmp_path):
    from artq.config import load_settings

    env = {"ARTQ_HOME": str(tmp_path)}
    assert load_settings(env=env | {"ARTQ_SOURCE_ALLOW_INSECURE_HTTP": "1"}).source.allow_insecure_http is True
    assert load_settings(env=env | {"ARTQ_SOURCE_ALLOW_INSECURE_HTTP": "false"}).source.allow_insecure_http is False
    with pytest.raises(ConfigError, match="`ARTQ_SOURCE_ALLOW_INSECURE_HTTP` must be 1 or 0"):
        load_settings(env=env | {"ARTQ_SOURCE_ALLOW_INSECURE_HTTP": "maybe"})
