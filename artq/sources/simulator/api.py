"""The controller's REST API as plain request → response logic (no sockets; see server.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from artq.sources.simulator import entities as ents
from artq.sources.simulator import metricdata as md
from artq.sources.simulator.auth import Authenticator, TokenError
from artq.sources.simulator.config import SimulatorConfig
from artq.sources.simulator.faults import FaultState
from artq.sources.simulator.render import jackson, malformed, to_xml
from artq.sources.simulator.world import World

TOKEN_PATH = "/controller/api/oauth/access_token"
REST_PREFIX = "/controller/rest/"
JSON_TYPE = "application/json;charset=UTF-8"
XML_TYPE = "application/xml;charset=UTF-8"
TEXT_TYPE = "text/plain;charset=UTF-8"


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = TEXT_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def text(status: int, message: str, **headers: str) -> Response:
    return Response(status, (message + "\n").encode(), TEXT_TYPE, dict(headers))


class Controller:
    def __init__(self, cfg: SimulatorConfig, world: World | None = None) -> None:
        self.cfg = cfg
        self.world = world or World(cfg)
        self.faults = FaultState(cfg.faults)
        self.auth = Authenticator(cfg, lambda: self.world.now().timestamp())
        self.apps = ents.build_entities(cfg)
        self._by_name = {e.app.name: e for e in self.apps}
        self._by_id = {str(e.id): e for e in self.apps}
        self.guid = ents.account_guid(cfg)

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes,
               malformed_json: bool = False) -> Response:
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        if path == TOKEN_PATH:
            if method != "POST":
                return text(405, "Use POST to request an access token.", Allow="POST")
            try:
                return Response(200, jackson(self.auth.issue(headers.get("content-type", ""), body, parts.query)).encode(), JSON_TYPE)
            except TokenError as exc:
                return text(exc.status, str(exc))
        if not path.startswith(REST_PREFIX.rstrip("/")):
            return text(404, f"Not found: {path}. The API lives under /controller/rest/.")
        why = self.auth.check(headers.get("authorization"))
        if why:
            return text(401, why, **{"WWW-Authenticate": 'Basic realm="controller"'})
        if method != "GET":
            return text(405, f"{method} is not supported here; the REST API is read with GET.", Allow="GET")
        q = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        segs = [unquote(s) for s in path[len(REST_PREFIX):].split("/")]
        try:
            resource, items = self._route(segs, q)
        except md.BadRequest as exc:
            return text(400, str(exc))
        except _NotFound as exc:
            return text(exc.status, str(exc))
        if q.get("output", "XML").lower() == "json":
            return Response(200, jackson(malformed(items) if malformed_json else items).encode(), JSON_TYPE)
        return Response(200, to_xml(resource, items), XML_TYPE)

    def _route(self, segs: list[str], q: dict[str, str]) -> tuple[str, list[dict]]:
        if segs[0] != "applications":
            raise _NotFound(404, f"Unknown resource /controller/rest/{'/'.join(segs)}.")
        if len(segs) == 1:
            return "applications", [e.application(self.guid) for e in self.apps]
        ent = self._app(segs[1])
        rest = segs[2:]
        if not rest:
            return "applications", [ent.application(self.guid)]
        head = rest[0]
        if head == "tiers" and len(rest) == 1:
            return "tiers", ent.tiers
        if head == "tiers" and len(rest) in (2, 3):
            tier = next((t for t in ent.tiers if rest[1] in (t["name"], str(t["id"]))), None)
            if tier is None:
                raise _NotFound(self.cfg.unknown_app_status, f"Invalid tier {rest[1]!r} of application {ent.app.name!r}.")
            if len(rest) == 2:
                return "tiers", [tier]
            if rest[2] == "nodes":
                return "nodes", [n for n in ent.nodes if n["tierId"] == tier["id"]]
        if head == "nodes" and len(rest) == 1:
            return "nodes", ent.nodes
        if head == "nodes" and len(rest) == 2:
            found = [n for n in ent.nodes if rest[1] in (n["name"], str(n["id"]))]
            if not found:
                raise _NotFound(self.cfg.unknown_app_status, f"Invalid node {rest[1]!r} of application {ent.app.name!r}.")
            return "nodes", found
        if head == "business-transactions" and len(rest) == 1:
            return "business-transactions", ent.bts
        if head == "backends" and len(rest) == 1:
            return "backends", ent.backends
        if head == "metrics" and len(rest) == 1:
            return "metrics", ents.tree(ent, q.get("metric-path")) or []
        if head == "metric-data" and len(rest) == 1:
            return "metric-data", self._metric_data(ent, q)
        raise _NotFound(404, f"Unknown resource /controller/rest/{'/'.join(segs)}.")

    def _app(self, key: str) -> ents.AppEntities:
        ent = self._by_name.get(key) or self._by_id.get(key)
        if ent is None:
            raise _NotFound(self.cfg.unknown_app_status, f"Invalid application id {key} is specified")
        return ent

    def _metric_data(self, ent: ents.AppEntities, q: dict[str, str]) -> list[dict]:
        pattern = q.get("metric-path", "")
        if not pattern.strip():
            raise md.BadRequest("Missing parameter metric-path: give a path such as "
                                "'Overall Application Performance|Average Response Time (ms)'.")
        rollup_text = q.get("rollup", "true").strip().lower()
        if rollup_text not in ("true", "false"):
            raise md.BadRequest(f"Parameter rollup must be true or false. Got {q['rollup']!r}.")
        tr = md.parse_time_range(q, self.world.now_ms())
        faults = self.faults.faults
        metrics = ents.resolve(ent, pattern, faults.missing_paths)
        if not metrics:
            return []
        return md.entries(self.world, ent, metrics, tr, rollup_text == "true", faults)


class _NotFound(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
