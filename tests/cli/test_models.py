"""Model versions through the CLI: list, promote, roll back, identical retrains, corrupt files."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select
from typer.testing import CliRunner

from artq.cli import app
from artq.cli import models as models_cli
from artq.pipeline import Runtime, champions, train_step
from artq.pipeline.drift import drift_step
from artq.storage import open_database
from artq.storage.models import Alert
from tests.conftest import write_config

runner = CliRunner()


def _champion(settings) -> str | None:
    db = open_database(settings.database_url)
    try:
        with db.session() as s:
            return champions.champion(s, "ABP")
    finally:
        db.dispose()


def test_rollback_to_a_named_version_moves_the_one_champion_pointer(tmp_path, trained_sqlite, monkeypatch):
    settings, t0, first = trained_sqlite
    rt = Runtime(settings)
    second = train_step(rt, "ABP", until=t0 - timedelta(hours=1))  # another window: a new version
    rt.close()
    assert second["registered"] and second["version"] != first["version"]
    config = write_config(tmp_path / "artq.yml", settings)
    assert runner.invoke(app, ["models", "promote", second["version"], "--config", config]).exit_code == 0
    assert _champion(settings) == second["version"]

    result = runner.invoke(app, ["models", "rollback", first["version"], "--app", "ABP", "--config", config])
    assert result.exit_code == 0, result.output
    assert _champion(settings) == first["version"]

    monkeypatch.setattr(models_cli.console, "width", 200)  # a wide terminal: no cell folds
    listed = runner.invoke(app, ["models", "list", "--app", "ABP", "--config", config])
    assert f"{first['version']} *" in listed.output and second["version"] in listed.output
    assert "promoted:" in listed.output  # why each version was or was not promoted
    assert re.search(r"\b\d (model|naive)\b", listed.output)  # what each version forecasts with


def test_unknown_version_is_refused_in_one_line_and_the_champion_kept(tmp_path, trained_sqlite):
    settings, _, first = trained_sqlite
    config = write_config(tmp_path / "artq.yml", settings)
    result = runner.invoke(app, ["models", "rollback", "v9999", "--config", config])
    assert result.exit_code != 0
    assert "model version v9999 of ABP is not registered" in result.output + str(result.exception)
    assert _champion(settings) == first["version"]


def test_an_identical_retrain_registers_nothing_and_says_why(trained_sqlite):
    settings, t0, first = trained_sqlite
    rt = Runtime(settings)
    try:
        again = train_step(rt, "ABP", until=t0)
    finally:
        rt.close()
    assert (again["registered"], again["promoted"], again["version"]) == (False, False, first["version"])
    assert again["reason"].startswith(f"unchanged: {first['version']} was trained on the same hours")
    db = open_database(settings.database_url)
    with db.session() as s:
        assert [v.version for v in champions.versions(s, "ABP")] == [first["version"]]
    db.dispose()


def test_models_list_survives_corrupt_files_and_marks_them(tmp_path, trained_sqlite):
    from pathlib import Path

    settings, _, first = trained_sqlite
    version_dir = Path(settings.models_dir) / "ABP" / "versions" / first["version"]
    (version_dir / "metadata.json").write_text("{not json")
    config = write_config(tmp_path / "artq.yml", settings)
    listed = runner.invoke(app, ["models", "list", "--config", config], terminal_width=250)
    assert listed.exit_code == 0, listed.output
    assert "CORRUPT:" in listed.output and "checksum" in listed.output


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


def test_models_list_says_what_a_version_forecasts_with_and_the_level_it_was_trained_on():
    horizons = {str(h): {"choice": c} for h, c in enumerate(
        ["model last", "model last & naive last", "naive last", "naive last & naive sdelta", "model sdelta", "naive last"], 1)}
    assert models_cli._forecasts_with({"horizons": horizons, "regime": None}) == "3 model, 3 naive"
    young = {"start": "2026-04-15T01:00:00+00:00", "hours": 30, "models_wait": True}
    assert models_cli._forecasts_with({"horizons": horizons, "regime": young}) == (
        "3 model, 3 naive; new level since 04-15 01:00 (naive for its first week)")
    assert models_cli._forecasts_with({}) == "?"  # a version saved without metrics
    only = {str(h): {"choice": "naive last"} for h in range(1, 7)}
    assert models_cli._forecasts_with({"horizons": only, "regime": young}).startswith("6 naive; new level")


def test_models_list_of_a_misspelt_application_says_so_in_one_line(tmp_path, trained_sqlite):
    settings, _, _ = trained_sqlite
    config = write_config(tmp_path / "artq.yml", settings)
    result = runner.invoke(app, ["models", "list", "--app", "APB", "--config", config])
    assert result.exit_code != 0  # the entry point prints it as one line and exits 2 (tests/cli/test_errors.py)
    said = result.output + str(result.exception)
    assert "unknown application 'APB'" in said and "did you mean 'ABP'" in said
