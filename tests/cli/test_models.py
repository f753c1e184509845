"""Model versions through the CLI: promote and roll back keep registry and database in step."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from typer.testing import CliRunner

from artq.cli import app
from artq.forecasting import registry
from artq.pipeline import Runtime, train_step
from artq.pipeline.drift import drift_step
from artq.storage import open_database
from artq.storage.models import Alert, ModelVersion
from tests.conftest import write_config

runner = CliRunner()


def test_rollback_to_a_named_version_updates_registry_and_database(tmp_path, trained_sqlite):
    settings, t0, first = trained_sqlite
    rt = Runtime(settings)
    second = train_step(rt, "ABP", until=t0)
    rt.close()
    registry.promote(settings.models_dir, "ABP", second["version"])  # as if the second had won
    config = write_config(tmp_path / "artq.yml", settings)

    result = runner.invoke(app, ["models", "rollback", first["version"], "--app", "ABP", "--config", config])
    assert result.exit_code == 0, result.output
    assert registry.champion(settings.models_dir, "ABP") == first["version"]
    db = open_database(settings.database_url)
    with db.session() as s:
        status = {m.version: m.status for m in s.scalars(select(ModelVersion))}
    db.dispose()
    assert status[first["version"]] == "champion"
    assert list(status.values()).count("champion") == 1

    listed = runner.invoke(app, ["models", "list", "--app", "ABP", "--config", config], terminal_width=200)
    assert first["version"] in listed.output and second["version"] in listed.output


def test_unknown_version_is_refused_and_the_champion_kept(tmp_path, trained_sqlite):
    settings, _, first = trained_sqlite
    config = write_config(tmp_path / "artq.yml", settings)
    result = runner.invoke(app, ["models", "rollback", "v9999", "--config", config])
    assert result.exit_code != 0
    assert "unknown model version 'v9999'" in str(result.exception)
    assert registry.champion(settings.models_dir, "ABP") == first["version"]


def test_stale_model_is_reported_as_drift_with_one_alert(trained_sqlite):
    settings, t0, _ = trained_sqlite
    rt = Runtime(settings)
    later = t0 + timedelta(days=30)
    first = drift_step(rt, "ABP", now=later)
    drift_step(rt, "ABP", now=later)
    rt.close()
    assert first["drifted"] and any(r.startswith("stale:") for r in first["reasons"])
    db = open_database(settings.database_url)
    with db.session() as s:
        alerts = list(s.scalars(select(Alert).where(Alert.kind == "drift")))
    db.dispose()
    assert len(alerts) == 1 and "stale" in alerts[0].message
