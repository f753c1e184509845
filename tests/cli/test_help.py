from __future__ import annotations

import pytest
from typer.testing import CliRunner

from artq.cli import app

runner = CliRunner()
COMMANDS = sorted(c.name for c in app.registered_commands)


def test_cli_has_the_commands_the_readme_documents():
    assert {"demo", "init-db", "simulator", "backfill", "train", "run-cycle", "status"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(command):
    result = runner.invoke(app, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert f"Example: artq {command}" in result.output
