"""`artq run-cycle` and `artq status` in real processes: truthful exit codes, stored text shown as text."""

from __future__ import annotations

from datetime import timedelta

from artq.storage import migrate
from artq.storage.db import Database
from artq.storage.models import PipelineRun
from artq.timeutil import last_complete_hour, utcnow
from tests.cli.test_parsing import artq
from tests.conftest import make_settings, write_config


def test_run_cycle_exits_1_and_names_the_failed_horizons(tmp_path, simulator):
    settings = make_settings(tmp_path, url=simulator.url)  # history from the simulator, but no model trained
    migrate(settings.database_url)
    cfg = write_config(tmp_path / "artq.yml", settings)
    out = artq(tmp_path, "run-cycle", "--config", cfg)
    assert out.returncode == 1, out
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("artq: cycle failed: "), out.stderr
    assert "no trained model for application 'ABP'" in last and "Traceback" not in out.stderr
    assert "Traceback" not in out.stderr


def test_status_prints_stored_markup_as_text_and_fits_80_columns(tmp_path):
    settings = make_settings(tmp_path)
    migrate(settings.database_url)
    db = Database(settings.database_url)
    evil = "fetch: [/] closing tag [bold red]not markup[/bold red] and a long tail " + "x" * 150
    t0 = last_complete_hour()
    with db.session() as s:
        for k, (status, error) in enumerate([("failed", evil), ("succeeded", None), ("partial", "h3: [/]")]):
            s.add(PipelineRun(application="ABP", origin=t0 - timedelta(hours=k), status=status, trigger="reconciler",
                              attempts=2, started_at=utcnow(), fetch_s=0.41, predict_s=1.25, refresh_s=0.07, error=error))
    db.dispose()
    out = artq(tmp_path, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, out.stdout
    text = " ".join(line.strip() for line in lines)
    assert "[/] closing tag [bold red]not markup[/bold red]" in text and "h3: [/]" in text
    assert "0.41/1.25/0.07" in text and text.count("reconciler") == 3


def test_a_partial_cycle_exits_1_naming_its_failed_horizons(capsys):
    import pytest
    import typer

    from artq.cli.core import _exit_on_failure

    _exit_on_failure({"status": "succeeded", "failed": {}})  # returns: exit 0
    with pytest.raises(typer.Exit) as exc:
        _exit_on_failure({"status": "partial", "horizons_ok": [1, 2, 4, 5, 6], "failed": {"3": "model [/] missing"}})
    assert exc.value.exit_code == 1
    assert capsys.readouterr().err.strip() == "artq: cycle partial: horizons 3 failed: h3: model [/] missing"
