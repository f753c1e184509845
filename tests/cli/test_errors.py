"""User mistakes end in one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("args", "message"),
    [
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


def test_an_unknown_application_names_the_closest_one_and_how_to_add_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | {"ARTQ_HOME": str(tmp_path),
                                                                               "ARTQ_SOURCE_SIMULATE": "1"}
    subprocess.run([sys.executable, "-m", "artq", "init-db"], cwd=tmp_path, env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "artq", "run-cycle", "--app", "ABQ"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("artq: error: unknown application 'ABQ' (did you mean 'ABP'?); see `artq apps list`, "
                                  "add it with `artq apps add ABQ --tiers T1,T2` or pick one from `artq discover`.")


@pytest.mark.parametrize("celery", [[], ["--celery"]], ids=["in-process", "celery"])
def test_run_cycle_with_a_broker_and_no_controller_names_the_setting(tmp_path, celery):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")} | {
        "ARTQ_HOME": str(tmp_path), "ARTQ_BROKER_URL": "redis://127.0.0.1:6379/15"}
    subprocess.run([sys.executable, "-m", "artq", "init-db"], cwd=tmp_path, env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "artq", "run-cycle", *celery], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "artq: error: no controller configured: set `source.url` (or ARTQ_SOURCE_URL) to your AppDynamics controller, "
        "or `source.simulate: true` (ARTQ_SOURCE_SIMULATE=1) to use the built-in simulator."]
