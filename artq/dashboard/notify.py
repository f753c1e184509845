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
  appears in a log line, an exception message or ``notify_error``: see :func:`redact`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from artq.config import Settings
from artq.storage.models import Alert, DashboardActiveAlert
from artq.timeutil import as_utc

log = logging.getLogger(__name__)

WEBHOOK_ENV = "ARTQ_ALERTS_WEBHOOK_URL"


def webhook_url(settings: Settings) -> str | None:
    """The configured webhook: ``alerts.webhook_url``, else the ``ARTQ_ALERTS_WEBHOOK_URL`` variable."""
    return settings.alerts.webhook_url or os.environ.get(WEBHOOK_ENV) or None


def redact(url: str) -> str:
    """``https://hooks.slack.com/…``: scheme and host only; path, query and credentials may be secrets."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
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
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``body`` as JSON; retry connection errors, timeouts, 429 and 5xx with exponential backoff.

    Other 4xx are not retried within this call (the receiver rejected the message; retrying in a
    second will not change its mind) but are still retried on the next refresh. The stdlib client
    is used on purpose: urllib3 logs every request line, token included, at DEBUG level.
    """
    data = json.dumps(body).encode()
    error = "not attempted"
    attempt = 0
    for attempt in range(1, retries + 1):
        req = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "artq-alerts"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # http(s) only: checked in config
                resp.read(1024)
            return Delivery(True, attempt)
        except urllib.error.HTTPError as exc:
            text = exc.read(200).decode("utf-8", "replace")
            error = f"HTTP {exc.code} from {redact(url)}: {scrub(text, url)}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = scrub(f"{type(exc).__name__}: {reason} ({redact(url)})", url)[:500]
        if attempt < retries:
            sleep(backoff_s * 2 ** (attempt - 1))
    return Delivery(False, attempt, error)


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
                              backoff_s=cfg.webhook_backoff_s, sleep=sleep)
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
