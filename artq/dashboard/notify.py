"""Webhook notifications of alerts: a JSON POST with a Slack-compatible ``text`` and structured fields.

Delivery rules:

* each refresh tries every open, not yet notified alert up to ``webhook_retries`` times with
  exponential backoff; a failure is stored in ``notify_error`` and tried again next refresh;
* nothing is sent from inside the refresh transaction: :func:`notify_after_commit` hooks the
  delivery to the caller's commit, so the dashboard tables and the run row still commit together,
  an alert that is rolled back is never announced, and the HTTP wait holds no database lock;
* an alert is sent at most once: the row is *claimed* (``notify_attempts`` bumped with a
  compare-and-set) and committed before the POST, so two refreshes racing on the same alert
  cannot both send it, and ``notified_at`` is set as soon as the receiver answers 2xx;
* the webhook URL usually embeds a token (Slack: ``/services/T../B../secret``), so it never
  appears in a log line, an exception message or ``notify_error``: see :func:`redact`;
* the URL is checked wherever it comes from (config or ``ARTQ_ALERTS_WEBHOOK_URL``): http or
  https with a host, else the alert is not sent, not marked notified, and the error says why;
* redirects are never followed (a receiver cannot forward the payload elsewhere), and each
  attempt has a *total* deadline of ``webhook_timeout_s`` (connect, send and the whole answer):
  a receiver trickling one byte at a time cannot hold a worker;
* with ``alerts.webhook_secret`` set, every POST carries ``X-Artq-Timestamp`` (Unix seconds) and
  ``X-Artq-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from artq.config import Settings
from artq.redaction import http_url_problem
from artq.storage.models import Alert, DashboardActiveAlert
from artq.timeutil import as_utc

log = logging.getLogger(__name__)

WEBHOOK_ENV = "ARTQ_ALERTS_WEBHOOK_URL"
SECRET_ENV = "ARTQ_ALERTS_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Artq-Signature"
TIMESTAMP_HEADER = "X-Artq-Timestamp"


def webhook_url(settings: Settings) -> str | None:
    """The configured webhook: ``alerts.webhook_url``, else the ``ARTQ_ALERTS_WEBHOOK_URL`` variable."""
    return settings.alerts.webhook_url or os.environ.get(WEBHOOK_ENV) or None


def webhook_secret(settings: Settings) -> str | None:
    """The signing secret: ``alerts.webhook_secret``, else ``ARTQ_ALERTS_WEBHOOK_SECRET``."""
    return getattr(settings.alerts, "webhook_secret", None) or os.environ.get(SECRET_ENV) or None


def webhook_url_problem(url: str, where: str = "alerts.webhook_url") -> str | None:
    """Why ``url`` cannot be a webhook (one line that never repeats its token), or None when it can."""
    return http_url_problem(url, where)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def redact(url: str) -> str:
    """``https://hooks.slack.com/…``: scheme and host only; path, query and credentials may be secrets."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}/…"


def scrub(text: str, url: str) -> str:
    """Remove every secret-bearing part of ``url`` (whole, path, query, credentials) from ``text``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]  # credentials in the URL, if any; a bare host is no secret
    secrets = [url, parts.path + (f"?{parts.query}" if parts.query else ""), parts.path, parts.query, userinfo]
    for s in sorted((s for s in secrets if s and s != "/"), key=len, reverse=True):
        text = text.replace(s, redact(url) if s == url else "…")
    return text


def payload(alert: Alert, dashboard_url: str | None = None) -> dict[str, Any]:
    """Slack reads ``text``; other receivers get the same facts as fields."""
    text = f":warning: {alert.message}"
    drivers = (alert.details or {}).get("drivers") or []
    if drivers:
        text += "\nDrivers: " + ", ".join(f"{name} {'↑' if c > 0 else '↓'}" for name, c in drivers[:3])
    if dashboard_url:
        text += f"\n{dashboard_url}"
    return {
        "text": text,
        "alert": {
            "key": alert.key, "application": alert.application, "kind": alert.kind, "severity": alert.severity,
            "status": alert.status, "opened_at": _iso(alert.opened_at), "origin": _iso(alert.origin),
            "horizon": alert.horizon, "target_hour": _iso(alert.target_hour), "lead_hours": alert.lead_hours,
            "predicted_ms": alert.predicted, "threshold_ms": alert.threshold,
            "rule": (alert.details or {}).get("rule"), "drivers": drivers[:5],
        },
    }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else as_utc(t).isoformat()


@dataclass(frozen=True)
class Delivery:
    ok: bool
    attempts: int
    error: str | None = None


def post_webhook(
    url: str,
    body: dict[str, Any],
    *,
    timeout_s: float = 5.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    secret: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> Delivery:
    """POST ``body`` as JSON; retry connection errors, timeouts, 429 and 5xx with exponential backoff.

    Other 4xx and every 3xx are not retried within this call (the receiver rejected the message;
    retrying in a second will not change its mind) but are still retried on the next refresh.
    ``http.client`` is used on purpose: it follows no redirect, logs nothing (urllib3 logs every
    request line, token included, at DEBUG level), and exposes the socket the deadline closes.
    """
    problem = webhook_url_problem(url)
    if problem:
        return Delivery(False, 0, problem)
    data = json.dumps(body).encode()
    error = "not attempted"
    attempt = 0
    for attempt in range(1, retries + 1):
        headers = {"Content-Type": "application/json", "User-Agent": "artq-alerts"}
        if secret:
            stamp = str(int(clock()))
            headers |= {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, data)}
        status, text, error = _post_once(url, data, headers, timeout_s)
        if status is not None and 200 <= status < 300:
            return Delivery(True, attempt)
        if status is not None and (status < 500 and status != 429):
            break
        if attempt < retries:
            sleep(backoff_s * 2 ** (attempt - 1))
    return Delivery(False, attempt, error)


def _post_once(url: str, data: bytes, headers: dict[str, str], deadline_s: float) -> tuple[int | None, str, str]:
    """One POST within ``deadline_s`` in total: (status or None, body start, error text)."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": ssl.create_default_context()} if parts.scheme == "https" else {}
    conn = cls(parts.hostname, parts.port, timeout=deadline_s, **kwargs)
    expired = threading.Event()

    def _expire() -> None:  # a per-read timeout cannot stop a trickle: cut the socket at the deadline
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    timer = threading.Timer(deadline_s, _expire)
    timer.daemon = True
    timer.start()
    try:
        if parts.username or parts.password:  # credentials in the URL become Basic auth, as urllib did
            import base64
            from urllib.parse import unquote

            pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
            headers = headers | {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        conn.request("POST", target, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read(1024).decode("utf-8", "replace")[:200]
        if expired.is_set():
            raise TimeoutError
        if 300 <= resp.status < 400:
            where = urlsplit(resp.getheader("Location") or "").hostname or "?"
            return resp.status, text, f"HTTP {resp.status} from {redact(url)}: a redirect to {where}, not followed"
        if resp.status >= 300:
            return resp.status, text, f"HTTP {resp.status} from {redact(url)}: {scrub(' '.join(text.split()), url)}"
        return resp.status, text, ""
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() or isinstance(exc, TimeoutError):
            return None, "", f"no complete answer from {redact(url)} within the {deadline_s:g} s deadline"
        return None, "", scrub(f"{type(exc).__name__}: {exc} ({redact(url)})", url)[:500]
    finally:
        timer.cancel()
        conn.close()


def notify_pending(
    session: Session,
    settings: Settings,
    application: str,
    now: datetime,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Send every open, unsent alert of ``application``; record the outcome on the alert row."""
    url = webhook_url(settings)
    if not url:
        return {"webhook": False, "sent": 0, "failed": 0}
    problem = webhook_url_problem(url, "alerts.webhook_url" if settings.alerts.webhook_url else WEBHOOK_ENV)
    if problem:  # nothing is claimed or marked notified: the alerts stay pending until the URL is fixed
        log.error("alerts of %s not sent: %s", application, problem)
        failed = session.execute(
            update(Alert)
            .where(Alert.application == application, Alert.status == "open", Alert.notified_at.is_(None))
            .values(notify_error=f"{now:%Y-%m-%dT%H:%MZ}: {problem}")
        ).rowcount
        session.commit()
        return {"webhook": True, "sent": 0, "failed": failed, "error": problem}
    cfg = settings.alerts
    pending = session.execute(
        select(Alert.id, Alert.notify_attempts).where(
            Alert.application == application, Alert.status == "open", Alert.notified_at.is_(None)
        )
    ).all()
    sent = failed = 0
    for alert_id, attempts in pending:
        # claim: only the refresh whose compare-and-set wins sends; commit so a racing one sees it
        claimed = session.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.notified_at.is_(None), Alert.notify_attempts == attempts)
            .values(notify_attempts=attempts + 1)
        ).rowcount
        session.commit()
        if claimed != 1:
            continue
        alert = session.get(Alert, alert_id)
        assert alert is not None
        result = post_webhook(url, payload(alert), timeout_s=cfg.webhook_timeout_s, retries=cfg.webhook_retries,
                              backoff_s=cfg.webhook_backoff_s, secret=webhook_secret(settings), sleep=sleep)
        if result.ok:
            alert.notified_at, alert.notify_error = now, None
            sent += 1
        else:
            alert.notify_error = f"{now:%Y-%m-%dT%H:%MZ} after {result.attempts} attempt(s): {result.error}"
            failed += 1
            log.warning("alert %s: webhook %s failed: %s", alert.key, redact(url), result.error)
        if result.ok:  # the active-alert snapshot was written before the delivery
            session.execute(update(DashboardActiveAlert).where(DashboardActiveAlert.alert_key == alert.key).values(notified=True))
        session.commit()  # record the outcome at once: a crash later must not make us send it again
    return {"webhook": True, "sent": sent, "failed": failed}


def notify_after_commit(session: Session, settings: Settings, application: str, now: datetime) -> bool:
    """Deliver the application's pending alerts once ``session`` commits (in a session of its own).

    Returns whether a delivery was scheduled (a webhook is configured). Errors are logged, never
    raised: the refresh has committed by then and must not be reported as failed.
    """
    if not webhook_url(settings):
        return False
    bind = session.get_bind()

    def _deliver(_committed: Session) -> None:
        try:
            with Session(bind) as own:
                notify_pending(own, settings, application, now)
        except Exception:  # the database or a bug; the next refresh tries again
            log.exception("alerts of %s: webhook delivery failed; retried at the next refresh", application)

    event.listen(session, "after_commit", _deliver, once=True)
    return True
