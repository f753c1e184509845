"""The hourly cycle through Redis and two real worker processes, stored in a scratch MariaDB."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import func, select

from artq.storage import open_database
from artq.storage.models import (
    DashboardForecastActual,
    DashboardLatestForecast,
    Forecast,
    PipelineRun,
)
from tests.conftest import ROOT, backfill_and_train, make_settings, write_config

pytestmark = pytest.mark.integration


def test_cycle_runs_across_two_workers_and_lands_in_mariadb(tmp_path, mariadb_url, redis_db, simulator, start_workers):
    from artq.storage import migrate

    settings = make_settings(tmp_path, database_url=mariadb_url, url=simulator.url)
    settings.celery.broker_url = settings.celery.result_backend = redis_db
    migrate(mariadb_url)
    t0, trained = backfill_and_train(settings)
    assert trained["promoted"]
    config = write_config(tmp_path / "artq.yml", settings)
    workers = start_workers(config, redis_db, n=2)

    out = subprocess.run(
        [sys.executable, "-m", "artq", "run-cycle", "--app", "ABP", "--origin", t0.isoformat(), "--celery", "--timeout", "300", "--config", config],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert out.returncode == 0, out.stderr + "".join(w.output()[-2000:] for w in workers)
    assert "6 of 6 horizons stored" in out.stdout

    db = open_database(mariadb_url)
    with db.session() as s:
        forecasts = list(s.scalars(select(Forecast).where(Forecast.origin == t0).order_by(Forecast.horizon)))
        latest = s.scalar(select(func.count()).select_from(DashboardLatestForecast))
        vs_actual = s.scalar(select(func.count()).select_from(DashboardForecastActual))
        run = s.scalar(select(PipelineRun).where(PipelineRun.origin == t0))
    db.dispose()
    assert [f.horizon for f in forecasts] == [1, 2, 3, 4, 5, 6]
    assert all(f.lower <= f.value <= f.upper for f in forecasts)
    assert (latest, vs_actual) == (6, 6)
    assert run.status == "succeeded" and run.error is None and run.fetch_s is not None
    executed_by = set(run.details["workers"].values())
    assert len(executed_by) > 1, f"all six horizons ran on {executed_by}"
    assert executed_by <= {w.hostname for w in workers}
