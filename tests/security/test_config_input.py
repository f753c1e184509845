"""Finding 6 (config half): hostile config values are one-line errors naming key, rule and value (exit 2)."""

from __future__ import annotations

import pytest

from tests.security.test_database_url import run_artq


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"source:\n  url: 'caf\xe9'\n", "is not UTF-8 text (byte 0xe9 on line 2). Save it as UTF-8."),
        (b"source: {retries: -1}", "`source.retries` must be a finite number between 0 and 20. Got -1."),
        (b"source: {timeout_s: .nan}", "`source.timeout_s` must be a finite number. Got nan."),
        (b"source: {timeout_s: .inf}", "`source.timeout_s` must be a finite number. Got inf."),
        (b"alerts: {webhook_backoff_s: -.inf}", "`alerts.webhook_backoff_s` must be a finite number. Got -inf."),
        (b"source: {url: 'https://acme.example:80x/', client_secret: CanaryCfgSecret}",
         "`source.url` must have a numeric port in 1..65535"),
        (b"backfill_days: 999999999", "`backfill_days` must be a finite number in 1..3660. Got 999999999."),
        (b"forecast: {training_days: 0}", "`forecast.training_days` must be a finite number in 1..3660. Got 0."),
        (b"source: {ca_bundle: /nonexistent/ca.pem}", "`source.ca_bundle` '/nonexistent/ca.pem' is not a file."),
        (b"celery: {broker_url: 'redis:/:CanaryCfgSecret@127.0.0.1:6379/0'}",
         "`celery.broker_url` must be a URL such as redis://:PASSWORD@HOST:6379/0. Got 'redis:/:***@127.0.0.1:6379/0'."),
        (b"celery: {broker_url: 'redis://:CanaryCfgSecret@127.0.0.1:63x9/0'}", "`celery.broker_url` must be a URL"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, content, message):
    path = tmp_path / "artq.yml"
    path.write_bytes(content)
    out = run_artq("status", env={"ARTQ_CONFIG": str(path), "ARTQ_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert message in out.stderr
    assert "CanaryCfgSecret" not in out.stderr


def test_a_non_numeric_port_in_the_source_url_never_shows_its_password(tmp_path):
    out = run_artq("status", env={"ARTQ_HOME": str(tmp_path), "ARTQ_SOURCE_URL": "https://u:CanaryUrlPw@h:abc/"})
    assert out.returncode == 2 and "CanaryUrlPw" not in out.stderr and "https://u:***@h:abc/" in out.stderr
