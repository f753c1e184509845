from __future__ import annotations

import pytest

from artq.config import load_settings
from artq.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "artq.yml"
    path.write_text(text)
    return path


def test_no_config_gives_the_embedded_defaults(tmp_path):
    s = load_settings(env={"ARTQ_HOME": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'artq.db'}"
    assert s.embedded and s.source.url is None
    assert [a.name for a in s.applications] == ["ABP"]
    assert s.applications[0].tiers[-1] == "CollectionServer" and len(s.applications[0].tiers) == 7


def test_environment_overrides_every_secret_and_url(tmp_path):
    path = _write(tmp_path, "database_url: sqlite:///file.db\nsource:\n  url: http://a:1\n  client_id: x@c\n  client_secret: s\n")
    env = {
        "ARTQ_HOME": str(tmp_path),
        "ARTQ_DATABASE_URL": "mysql+mysqldb://u:p@h/artq",
        "ARTQ_BROKER_URL": "redis://h:6379/0",
        "ARTQ_RESULT_BACKEND": "redis://h:6379/1",
        "ARTQ_SOURCE_URL": "https://ctrl.example:8181",
        "ARTQ_SOURCE_CLIENT_ID": "artq@acme",
        "ARTQ_SOURCE_CLIENT_SECRET": "s3cret",
    }
    s = load_settings(path, env=env)
    assert (s.database_url, s.celery.broker_url, s.celery.result_backend) == (
        "mysql+mysqldb://u:p@h/artq", "redis://h:6379/0", "redis://h:6379/1")
    assert (s.source.url, s.source.client_id, s.source.client_secret) == ("https://ctrl.example:8181", "artq@acme", "s3cret")
    assert not s.embedded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("applications:\n  - tiers: [a]\n", "missing key `applications[0].name` in the config."),
        ("source:\n  timeout_s: fast\n", "`source.timeout_s` must be a number. Got 'fast'."),
        ("backfil_days: 3\n", "unknown key `backfil_days` in the config"),
        ("source:\n  retries: 2.5\n", "`source.retries` must be a whole number. Got 2.5."),
        ("applications: ABP\n", "`applications` must be a list. Got 'ABP'."),
        ("forecast:\n  horizons: 4\n", "`forecast.horizons` must be 6 (one model per hour ahead). Got 4."),
        ("database_url: oracle://x\n", "`database_url` must be a SQLAlchemy URL"),
        ("- a\n- b\n", "must hold a mapping of settings at the top level"),
        ("a: [\n", "is not valid YAML at line 2"),
        ("operations:\n  model_cache_size: 0\n", "`operations.model_cache_size` must be at least 1. Got 0."),
    ],
)
def test_bad_config_stops_with_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, text), env={"ARTQ_HOME": str(tmp_path)})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_application_names_the_configured_ones(tmp_path):
    s = load_settings(env={"ARTQ_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"unknown application 'XYZ': `applications` in the config lists ABP\."):
        s.application("XYZ")


def test_missing_config_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yml", env={})


def test_the_shipped_example_config_loads(tmp_path):
    from tests.conftest import ROOT

    s = load_settings(ROOT / "artq.yml.example", env={"ARTQ_HOME": str(tmp_path), "ARTQ_SOURCE_CLIENT_SECRET": "x"})
    assert s.celery.broker_url == "redis://127.0.0.1:6379/0"
    assert s.source.client_secret == "x"
