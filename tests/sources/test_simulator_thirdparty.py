"""A third-party client (AppDynamicsRESTx, Basic auth only) reads the simulator unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from artq.sources.simulator import SimApp, SimulatorConfig, start_simulator

appd_request = pytest.importorskip("appd.request")

NOW = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
T0 = int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000


@pytest.fixture(scope="module")
def client():
    cfg = SimulatorConfig(seed=42, applications=[SimApp("ABP"), SimApp("Billing Batch", tiers=["batch"])],
                          username="api", password="pw", now=lambda: NOW)
    with start_simulator(cfg) as sim:
        yield appd_request.AppDynamicsClient(base_url=sim.url, username="api", password="pw", account="customer1")


def test_appdynamicsrestx_lists_applications_tiers_and_nodes(client) -> None:
    apps = client.get_applications()
    assert [a.name for a in apps] == ["ABP", "Billing Batch"]
    tiers = client.get_tiers(apps[0].id)
    assert [t.name for t in tiers][:3] == ["ABPServer1", "ABPServer2", "ABPServer3"]
    nodes = client.get_nodes(apps[0].id)
    assert len(nodes) == sum(t.node_count for t in tiers)
    tier_nodes = client.get_nodes("ABP", tiers[0].id)
    assert {n.tier_name for n in tier_nodes} == {"ABPServer1"}


def test_appdynamicsrestx_reads_business_transactions_backends_and_the_tree(client) -> None:
    assert len(client.get_bt_list("ABP")) == 7
    assert {b.exit_point_type for b in client.get_backends("ABP")} == {"DB", "HTTP", "CACHE"}
    tree = client.get_metric_tree("ABP", "Overall Application Performance")
    assert "Average Response Time (ms)" in [n.name for n in tree]


def test_appdynamicsrestx_reads_metric_data_with_capitalised_rollup(client) -> None:
    path = "Overall Application Performance|*|Average Response Time (ms)"
    rolled = client.get_metrics(path, "ABP", time_range_type="BETWEEN_TIMES", start_time=T0, end_time=T0 + HOUR,
                                rollup=True)
    assert len(rolled) == 7 and all(len(md.values) == 1 for md in rolled)
    minutes = client.get_metrics("Overall Application Performance|Calls per Minute", "Billing Batch",
                                 time_range_type="BEFORE_TIME", end_time=T0 + HOUR, duration_in_mins=30, rollup=False)
    [series] = minutes
    assert series.frequency == "ONE_MIN" and 25 <= len(series.values) <= 30
    assert all(v.value == v.sum for v in series.values)
