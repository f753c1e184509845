"""`artq demo` as a user runs it: a fresh home, no servers, twice."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa


def _demo(home) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")}
    env |= {"ARTQ_HOME": str(home), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "artq", "demo", "--days", "20"], cwd=home, env=env,
                          capture_output=True, text=True, timeout=900)


def test_demo_prints_six_forecasts_and_a_second_run_duplicates_nothing(tmp_path):
    first = _demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert all(f"+{h} h" in first.stdout for h in range(1, 7)), first.stdout
    assert "6 of 6 horizons stored" in first.stdout
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'artq.db'}")

    def counts():
        with engine.connect() as c:
            return {t: c.execute(sa.text(f"select count(*) from {t}")).scalar()
                    for t in ("observations", "forecasts", "pipeline_runs", "model_versions", "dashboard_latest_forecast")}

    before = counts()
    second = _demo(tmp_path)
    assert second.returncode == 0, second.stderr
    after = counts()
    engine.dispose()
    assert before["forecasts"] == 6 and before["model_versions"] == 1
    # the clock may pass an hour boundary between runs: then exactly one more cycle is allowed
    grew = after["pipeline_runs"] - before["pipeline_runs"]
    assert grew in (0, 1)
    assert after["forecasts"] == 6 * (1 + grew)
    assert after["model_versions"] == 1
