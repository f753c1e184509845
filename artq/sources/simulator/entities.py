"""The application model the controller lists: ids, tiers, nodes, business transactions,
backends, and the registry of metric paths (what exists, what has data, ids and names)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from artq.catalog import MAIN, METRICS, OVERALL
from artq.sources.simulator.config import SimApp, SimulatorConfig
from artq.sources.simulator.generate import tier_params
from artq.sources.simulator.rng import stable_key

ACCOUNT_GUID_NS = "artq-simulator"
# Registered under every server but never reported: realistic "METRIC DATA NOT FOUND" entries.
SILENT_LEAVES = ("Stall Count",)


@dataclass(frozen=True)
class RegisteredMetric:
    path: str
    server: str  # MAIN or a tier
    metric_key: str | None  # None: registered, never has data
    metric_id: int
    metric_name: str  # the controller's internal name (spec §4.5)


@dataclass
class AppEntities:
    app: SimApp
    id: int
    tiers: list[dict]
    nodes: list[dict]
    bts: list[dict]
    backends: list[dict]
    metrics: dict[str, RegisteredMetric]  # by path
    by_depth: dict[int, list[tuple[tuple[str, ...], RegisteredMetric]]]

    def application(self, guid: str) -> dict:
        return {"description": self.app.description, "id": self.id, "name": self.app.name, "accountGuid": guid}


def build_entities(cfg: SimulatorConfig) -> list[AppEntities]:
    """Ids follow the configuration order, so the same config lists the same ids."""
    out = []
    tier_id, node_id, bt_id, backend_id = 10, 100, 1000, 5000
    for i, app in enumerate(cfg.applications):
        tiers, nodes, bts, backends = [], [], [], []
        tier_ids: dict[str, int] = {}
        for tier in app.tiers:
            tier_id += 1
            tier_ids[tier] = tier_id
            n_nodes = tier_params(cfg.seed, app.name, tier).nodes
            tiers.append({"agentType": "APP_AGENT", "description": "", "id": tier_id, "name": tier,
                          "numberOfNodes": n_nodes, "type": "Application Server"})
            slug = re.sub(r"[^0-9a-z]+", "-", tier.lower()).strip("-") or "tier"
            for k in range(1, n_nodes + 1):
                node_id += 1
                nodes.append({
                    "appAgentPresent": True, "appAgentVersion": "Server Agent #24.9.1.36341",
                    "id": node_id, "ipAddresses": None, "machineAgentPresent": False,
                    "machineAgentVersion": "", "machineId": node_id + 100000,
                    "machineName": f"{slug}-vm{k:02d}", "machineOSType": "Linux",
                    "name": f"{slug}-node{k}", "nodeUniqueLocalId": "", "tierId": tier_id,
                    "tierName": tier, "type": "Other", "agentType": "APP_AGENT",
                })
            bt_id += 1
            bts.append({"background": False, "entryPointType": "SERVLET", "id": bt_id,
                        "internalName": f"/{slug}/request", "name": f"/{slug}/request",
                        "tierId": tier_id, "tierName": tier})
        for name, kind, props in (
            ("Discovered backend call - orders-db", "DB", [{"name": "VENDOR", "value": "MARIADB"}]),
            ("payments.example.com:443", "HTTP", [{"name": "HOST", "value": "payments.example.com"}]),
            ("session-cache", "CACHE", [{"name": "SERVER POOL", "value": "session-cache:6379"}]),
        ):
            backend_id += 1
            backends.append({"exitPointType": kind, "id": backend_id, "name": name, "properties": props,
                             "tierId": tier_ids[app.tiers[0]]})
        metrics = _register(app, tier_ids)
        by_depth: dict[int, list] = {}
        for path in sorted(metrics):
            segs = tuple(split_path(path))
            by_depth.setdefault(len(segs), []).append((segs, metrics[path]))
        out.append(AppEntities(app, 5 + i, tiers, nodes, bts, backends, metrics, by_depth))
    return out


def _register(app: SimApp, tier_ids: dict[str, int]) -> dict[str, RegisteredMetric]:
    leaves = [(m.leaf, m.key) for m in METRICS] + [(leaf, None) for leaf in SILENT_LEAVES]
    out = {}
    for server in [MAIN, *app.tiers]:
        for leaf, key in leaves:
            if server == MAIN:
                path, name = f"{OVERALL}|{leaf}", f"BTM|Application Summary|{leaf}"
            else:
                path = f"{OVERALL}|{server}|{leaf}"
                name = f"BTM|Application Summary|Component:{tier_ids[server]}|{leaf}"
            mid = 1_000_000 + stable_key("metric-id", app.name, path) % 90_000_000
            out[path] = RegisteredMetric(path, server, key, mid, name)
    return out


_SPLIT = re.compile(r"(?<!\\)\|")


def split_path(path: str) -> list[str]:
    """Segments of a metric path: ``|`` separates, ``\\|`` and ``\\\\`` escape (spec §4.3)."""
    return [s.replace("\\|", "|").replace("\\\\", "\\") for s in _SPLIT.split(path)]


def resolve(ent: AppEntities, pattern: str, hidden: frozenset[str] = frozenset()) -> list[RegisteredMetric]:
    """Registered metrics matching ``pattern`` (``*`` = one whole segment), sorted by path."""
    segs = split_path(pattern)
    if "*" not in segs:
        m = ent.metrics.get("|".join(segs))
        return [m] if m is not None and m.path not in hidden else []
    return [
        m
        for cand, m in ent.by_depth.get(len(segs), [])
        if m.path not in hidden and all(p == "*" or p == c for p, c in zip(segs, cand))
    ]


def tree(ent: AppEntities, folder: str | None) -> list[dict] | None:
    """One level of the metric browser under ``folder``; None for an unknown folder."""
    leaves = [m.leaf for m in METRICS] + list(SILENT_LEAVES)
    if not folder:
        return [{"name": OVERALL, "type": "folder"}]
    segs = split_path(folder.rstrip("|"))
    if segs == [OVERALL]:
        return [{"name": t, "type": "folder"} for t in ent.app.tiers] + [{"name": x, "type": "leaf"} for x in leaves]
    if len(segs) == 2 and segs[0] == OVERALL and segs[1] in ent.app.tiers:
        return [{"name": x, "type": "leaf"} for x in leaves]
    return None


def account_guid(cfg: SimulatorConfig) -> str:
    h = f"{stable_key(ACCOUNT_GUID_NS, cfg.account):016x}{stable_key(cfg.account, ACCOUNT_GUID_NS):016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
