"""User mistakes end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run-cycle", "--app", "XYZ"], "artq: error: unknown application 'XYZ': `applications` in the config lists ABP."),
        (["backfill"], "artq: error: give `--days N` or `--start HOUR` (with an optional `--end HOUR`)."),
        (["run-cycle", "--origin", "2026-11-26T08:30Z"], "artq: error: `origin` must fall on a whole UTC hour"),
        (["status", "--config", "missing.yml"], "artq: error: config file 'missing.yml' does not exist."),
    ],
)
def test_user_mistakes_give_one_line_and_exit_2(tmp_path, args, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | {"ARTQ_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "artq", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith(message), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
