"""``artq apps`` and ``artq discover`` against the simulator over real HTTP, on a SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from artq.sources.simulator import SimulatorConfig, fleet_apps, start_simulator
from artq.storage import open_database


@pytest.fixture(scope="module")
def fleet_simulator():
    """A controller serving three applications APP0001..APP0003 (seven tiers each)."""
    cfg = SimulatorConfig(seed=3, applications=fleet_apps(3), client_id=DEFAULT_CLIENT_ID,
                          client_secret=DEFAULT_CLIENT_SECRET)
    with start_simulator(cfg, host="127.0.0.1", port=0) as sim:
        yield sim


def artq(tmp_path, sim, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARTQ_")}
    env |= {"ARTQ_HOME": str(tmp_path), "ARTQ_SOURCE_URL": sim.url}
    return subprocess.run([sys.executable, "-m", "artq", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def listed(tmp_path) -> dict[str, tuple]:
    from artq.pipeline import applications as apps

    db = open_database(f"sqlite:///{tmp_path / 'artq.db'}")
    try:
        with db.session() as s:
            return {r.name: (r.status, list(r.tiers), r.added_by) for r in apps.listed(s, include_paused=True)}
    finally:
        db.dispose()


def test_discover_lists_the_controllers_applications_and_adds_the_chosen_ones(tmp_path, fleet_simulator):
    out = artq(tmp_path, fleet_simulator, "discover", "--add", "APP0002", "--add", "APP0003")
    assert out.returncode == 0, out.stderr
    assert "APP0001" in out.stdout and "added 2: APP0002, APP0003" in out.stdout
    apps = listed(tmp_path)
    assert apps["APP0002"] == ("active", list(fleet_apps(3)[1].tiers), "discover")  # its tiers as the controller names them
    assert set(apps) == {"ABP", "APP0002", "APP0003"}  # ABP: the config's seed


def test_a_tier_typo_is_one_line_naming_the_closest_tier(tmp_path, fleet_simulator):
    out = artq(tmp_path, fleet_simulator, "apps", "add", "APP0001", "--tiers", "ABPServer1,ABPServr3")
    assert out.returncode == 2
    assert out.stderr.strip() == ("artq: error: application 'APP0001': the controller has no tier 'ABPServr3' "
                                  "(did you mean 'ABPServer3'?); its tiers: ABPServer1, ABPServer2, ABPServer3, "
                                  "ABPServer4, ABPServer5, ABPServer6, CollectionServer.")
    assert "APP0001" not in listed(tmp_path)
    wrong_app = artq(tmp_path, fleet_simulator, "apps", "add", "APP001", "--tiers", "ABPServer1")
    assert wrong_app.returncode == 2 and "did you mean 'APP0001'?" in wrong_app.stderr


def test_pause_resume_remove_and_the_config_seed_cannot_be_removed(tmp_path, fleet_simulator):
    assert artq(tmp_path, fleet_simulator, "apps", "add", "APP0001", "--tiers", "ABPServer1,ABPServer3",
                "--metrics", "art,cpm").returncode == 0
    assert artq(tmp_path, fleet_simulator, "apps", "pause", "APP0001").returncode == 0
    assert listed(tmp_path)["APP0001"][0] == "paused"
    assert artq(tmp_path, fleet_simulator, "apps", "resume", "APP0001").returncode == 0
    assert listed(tmp_path)["APP0001"][0] == "active"
    refused = artq(tmp_path, fleet_simulator, "apps", "remove", "ABP")
    assert refused.returncode == 2 and "declared in the config" in refused.stderr
    assert artq(tmp_path, fleet_simulator, "apps", "remove", "APP0001").returncode == 0
    assert "APP0001" not in listed(tmp_path)
    bad_metric = artq(tmp_path, fleet_simulator, "apps", "add", "APP0002", "--tiers", "ABPServer1", "--metrics", "cpm,ert")
    assert bad_metric.returncode == 2 and "unknown metric 'ert'" in bad_metric.stderr


def test_an_applications_metric_set_is_what_gets_stored(tmp_path, fleet_simulator):
    from datetime import timedelta

    from sqlalchemy import select

    from artq.pipeline import Runtime
    from artq.pipeline.ingest import backfill
    from artq.storage.models import Observation
    from artq.timeutil import last_complete_hour
    from tests.conftest import make_settings

    assert artq(tmp_path, fleet_simulator, "apps", "add", "APP0001", "--tiers", "ABPServer1",
                "--metrics", "art,cpm").returncode == 0
    rt = Runtime(make_settings(tmp_path, url=fleet_simulator.url))
    try:
        t0 = last_complete_hour()
        backfill(rt, rt.application("APP0001"), t0 - timedelta(hours=5), t0)
        with rt.db.session() as s:
            stored = set(s.execute(select(Observation.server, Observation.metric)
                                   .where(Observation.application == "APP0001")).all())
    finally:
        rt.close()
    assert stored == {("main", "art"), ("main", "cpm"), ("ABPServer1", "art"), ("ABPServer1", "cpm")}
