"""Finding 4: webhook URLs checked wherever they come from, payloads signed, no redirects, a deadline."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from artq.config import load_settings
from artq.dashboard.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, notify_pending, post_webhook
from artq.errors import ConfigError
from artq.storage import open_database
from artq.storage.models import Alert
from tests.security.servers import http_server

NOW = datetime(2026, 11, 2, 12, tzinfo=UTC)
TOKEN = "CanaryWebhookToken7731abcdef"


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The receiver's check, as docs/security.md shows it."""
    stamp = headers[TIMESTAMP_HEADER]
    expected = "sha256=" + hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers[SIGNATURE_HEADER])


def open_alert(db) -> None:
    with db.session() as s:
        s.add(Alert(key="ABP:breach", application="ABP", kind="forecast_breach", status="open", opened_at=NOW,
                    message="ART 900 ms >= threshold 500 ms", notify_attempts=0))


@pytest.mark.parametrize("url", ["file:///etc/hostname", f"hooks.example/services/{TOKEN}", "gopher://h/x"])
def test_webhook_url_from_the_environment_is_validated_at_load(url, tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(env={"ARTQ_HOME": str(tmp_path), "ARTQ_ALERTS_WEBHOOK_URL": url})
    assert "ARTQ_ALERTS_WEBHOOK_URL" in str(err.value) and "http://" in str(err.value)
    assert TOKEN not in str(err.value)


def test_invalid_webhook_url_in_the_environment_leaves_the_alert_pending(sqlite_settings, monkeypatch, caplog):
    monkeypatch.setenv("ARTQ_ALERTS_WEBHOOK_URL", "file:///etc/hostname")  # set after the settings loaded
    db = open_database(sqlite_settings.database_url)
    open_alert(db)
    with db.session() as s:
        out = notify_pending(s, sqlite_settings, "ABP", NOW)
    with db.session() as s:
        [a] = s.scalars(select(Alert)).all()
    assert out["sent"] == 0 and a.notified_at is None and a.notify_attempts == 0
    assert "`ARTQ_ALERTS_WEBHOOK_URL` must start with http:// or https://. Got scheme 'file'." in a.notify_error
    assert "must start with http://" in caplog.text
    db.dispose()


def test_signed_payload_verifies_with_the_shared_secret_and_fails_with_another(sqlite_settings):
    with http_server(lambda r, b: (200, {}, b"ok")) as (url, log):
        sqlite_settings.alerts.webhook_url = f"{url}/services/{TOKEN}"
        sqlite_settings.alerts.webhook_secret = "CanaryWebhookSecret5521"
        db = open_database(sqlite_settings.database_url)
        open_alert(db)
        with db.session() as s:
            assert notify_pending(s, sqlite_settings, "ABP", NOW)["sent"] == 1
        db.dispose()
    [(method, path, headers, body)] = log
    assert method == "POST" and json.loads(body)["alert"]["key"] == "ABP:breach"
    assert headers[SIGNATURE_HEADER].startswith("sha256=") and headers[TIMESTAMP_HEADER].isdigit()
    assert verify("CanaryWebhookSecret5521", headers, body)
    assert not verify("another-secret", headers, body)
    assert not verify("CanaryWebhookSecret5521", headers, body.replace(b"900", b"100"))  # tampered body
    forged = headers | {TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)}
    assert not verify("CanaryWebhookSecret5521", forged, body)  # the timestamp is signed too


def test_unsigned_without_a_secret():
    with http_server(lambda r, b: (200, {}, b"ok")) as (url, log):
        assert post_webhook(url, {"text": "x"}, retries=1).ok
    assert SIGNATURE_HEADER not in log[0][2]


def test_redirects_are_not_followed():
    with http_server(lambda r, b: (200, {}, b"ok")) as (elsewhere, stolen):
        target = elsewhere.replace("127.0.0.1", "localhost")
        with http_server(lambda r, b: (307, {"Location": f"{target}/steal"}, b"")) as (url, seen):
            result = post_webhook(f"{url}/services/{TOKEN}", {"text": "x"}, retries=3, backoff_s=0)
    assert not result.ok and len(seen) == 1 and stolen == []
    assert "HTTP 307" in result.error and "redirect to localhost, not followed" in result.error
    assert TOKEN not in result.error


class Trickler:
    """A receiver that answers one byte every ``every_s`` seconds; counts the bytes it got out."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40

    def __init__(self, every_s: float = 0.8):
        self.every_s, self.sent, self.cut = every_s, 0, threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(65536)
        try:
            for byte in self.ANSWER:
                conn.sendall(bytes([byte]))
                self.sent += 1
                if self.cut.wait(self.every_s):
                    break
        except OSError:  # the client hung up: that is the point
            pass
        finally:
            conn.close()

    def client_gone(self) -> bool:
        return self.sent < len(self.ANSWER)


def test_a_trickling_receiver_cannot_hold_a_delivery_past_its_deadline():
    trickler = Trickler(every_s=0.8)  # each byte well inside a per-read timeout of 2 s
    result = post_webhook(trickler.url, {"text": "x"}, timeout_s=2.0, retries=1)
    trickler.cut.set()
    assert not result.ok and "within the 2 s deadline" in result.error
    # without a total deadline the client would have read all 79 bytes (about 63 s)
    assert trickler.sent < len(Trickler.ANSWER) // 2 and trickler.client_gone()
