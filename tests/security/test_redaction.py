"""Finding 1: URLs and secret values are masked in everything artq prints or logs."""

from __future__ import annotations

import logging

import pytest

from artq.redaction import install_log_redaction, mask_url, redact, register_secrets


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("mysql+mysqldb://artq:S3cret@db:3306/artq", "mysql+mysqldb://artq:***@db:3306/artq"),
        ("mysql+mysqldb:/artq:S3cret@db/artq", "mysql+mysqldb:/artq:***@db/artq"),  # one slash: malformed
        ("mysql+mysqldb:artq:S3cret@db/artq", "mysql+mysqldb:artq:***@db/artq"),
        ("mysql://artq:p@ss@word@db/artq", "mysql://artq:***@db/artq"),  # unescaped '@' in the password
        ("redis://:S3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("https://hooks.example/in?token=S3cret&x=1", "https://hooks.example/in?token=***&x=1"),
        ("sqlite:////var/lib/artq.db", "sqlite:////var/lib/artq.db"),
        ("https://acme.saas.appdynamics.com:8443/controller", "https://acme.saas.appdynamics.com:8443/controller"),
    ],
)
def test_mask_url_hides_the_password_of_well_formed_and_malformed_urls(url, masked):
    assert mask_url(url) == masked


def test_redact_masks_urls_in_free_text_and_given_secret_values():
    text = "Could not parse SQLAlchemy URL from string 'mysql+mysqldb:/u:PW-123@h/db'; token abcd-efgh at 12:30:05"
    out = redact(text, ["abcd-efgh"])
    assert "PW-123" not in out and "abcd-efgh" not in out
    assert "'mysql+mysqldb:/u:***@h/db'" in out and "12:30:05" in out


def test_registered_password_tail_is_hidden_without_its_url():
    register_secrets(["mysql://u:head-part@tail-part@db/x"])
    assert redact("Unknown server host 'tail-part@db'") == "Unknown server host '***@db'"


def test_log_records_are_redacted_whatever_the_handler(caplog):
    install_log_redaction(["canary-log-secret-77"])
    logger = logging.getLogger("artq.test.redaction")
    with caplog.at_level(logging.INFO, logger="artq.test.redaction"):
        logger.info("connecting to %s with %s", "redis://:pw-in-url@host:6379/0", "canary-log-secret-77")
        try:
            raise RuntimeError("boom canary-log-secret-77")
        except RuntimeError:
            logger.exception("failed")
    text = caplog.text
    assert "pw-in-url" not in text and "canary-log-secret-77" not in text
    assert "redis://:***@host:6379/0" in text and "RuntimeError: boom ***" in text
