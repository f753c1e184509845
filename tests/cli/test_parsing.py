"""Argument-parsing mistakes in a real `artq` process: one line on stderr, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def artq(tmp_path, *args, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | {"ARTQ_HOME": str(tmp_path), "COLUMNS": "80"}
    env |= extra_env or {}
    return subprocess.run([sys.executable, "-m", "artq", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["backfill", "--days", "abc"], "artq: error: Invalid value for '--days':"),
        (["dashboard", "--port", "70000"], "artq: error: Invalid value for '--port' / '-p': Input should be less than or equal to 65535"),
        (["nope"], "artq: error: No such command 'nope'."),
        (["status", "--bogus"], "artq: error: No such option: --bogus"),
        (["backfill", "--days", "999999999"], "artq: error: Invalid value for '--days': Input should be less than or equal to 3650"),
        (["run-cycle", "--origin", "2030-01-01T00:00Z"], "artq: error: `--origin` 2030-01-01T00:00Z is in the future"),
        (["run-cycle", "--timeout", "-5"], "artq: error: Invalid value for '--timeout': Input should be greater than or equal to 1"),
        (["backfill", "--start", "0001-01-01T00:00Z"], "artq: error: `--start` is more than 3650 days before `--end`"),
        (["status", "--limit", "0"], "artq: error: Invalid value for '--limit': Input should be greater than or equal to 1"),
        (["simulator", "--seed", "-1"], "artq: error: Invalid value for '--seed':"),
        (["workers", "--timeout", "1e9"], "artq: error: Invalid value for '--timeout': Input should be less than or equal to 60"),
    ],
)
def test_parsing_mistakes_give_one_line_and_exit_2(tmp_path, args, message):
    out = artq(tmp_path, *args)
    assert out.returncode == 2, out
    assert out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    if "Invalid value" in message or "No such" in message:
        assert "--help" in out.stderr  # click's mistakes say where to look


def test_the_future_origin_is_refused_before_any_database_is_touched(tmp_path):
    out = artq(tmp_path, "run-cycle", "--origin", "2030-01-01T00:00Z")
    assert out.returncode == 2 and not (tmp_path / "artq.db").exists()


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["status", "-h"], ["models", "-h"]])
def test_dash_h_shows_help_like_dash_dash_help(tmp_path, args):
    out = artq(tmp_path, *args)
    assert out.returncode == 0 and out.stderr == ""
    assert "Usage:" in out.stdout and "--help" in out.stdout


def test_version(tmp_path):
    from importlib.metadata import version

    out = artq(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"artq {version('artq')}"
