"""AppDynamicsClient over real HTTP: a small controller stub in this file, then the simulator.

The stub serves deterministic per-minute data (below, ``minute_point``) aggregated the way the
API spec says a controller does: bucket size from the range length, one point for rollup=true.
The expected hourly values are computed here straight from the per-minute data.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from artq.catalog import MAIN, METRICS, Rollup, metric_path
from artq.config import SourceSettings
from artq.errors import (
    AuthFailed,
    ConfigError,
    InvalidResponse,
    SourceUnavailable,
    UnknownApplication,
)
from artq.sources.appdynamics import AppDynamicsClient, FetchResult
from artq.sources.simulator import (
    Faults,
    SimApp,
    SimulatorConfig,
    World,
    start_simulator,
)
from artq.timeutil import HOUR, to_ms

CLIENT_ID = "artq@customer1"
SECRET = "s3cret-Zq9"
USER, PASSWORD = "ops@customer1", "pw-Xy7"
TIERS = ["ABPServer1", "ABPServer2"]
T0 = datetime(2026, 11, 2, 0, tzinfo=UTC)
MIN = 60_000
GAP_HOUR = T0 + 3 * HOUR  # ABPServer2 reports nothing during this hour


# ---- the stub controller --------------------------------------------------------------------


def minute_point(server: str, metric_index: int, minute_ms: int) -> tuple[int, int] | None:
    """(count, sum) of one minute, or None when the server reported nothing."""
    if server == "ABPServer2" and GAP_HOUR <= datetime.fromtimestamp(minute_ms / 1000, UTC) < GAP_HOUR + HOUR:
        return None
    m = minute_ms // MIN
    s = [MAIN, *TIERS].index(server)
    if metric_index == 0:  # ART: count = calls, sum = total ms
        count = 5 + m % 7 + s
        return count, count * (100 + 10 * s) + m % 13
    return 2, (m * (metric_index + 3)) % 17 + s  # counters: count = reports, sum = events


def expected_hourly(server: str, metric_index: int, hour: datetime) -> float | None:
    points = [minute_point(server, metric_index, to_ms(hour) + i * MIN) for i in range(60)]
    points = [p for p in points if p]
    if not points:
        return None
    if METRICS[metric_index].rollup is Rollup.AVERAGE:
        return sum(p[1] for p in points) / sum(p[0] for p in points)
    return sum(p[1] for p in points) / 60


@dataclass
class Stub:
    ttl: float = 300.0
    tokens: set[str] = field(default_factory=set)
    faults: list[str] = field(default_factory=list)  # consumed one per metric-data request
    log: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    accept_tokens: bool = True
    issued: int = 0

    def metric_data(self, query: dict[str, str]) -> list[dict]:
        pattern = query["metric-path"].split("|")
        start, end = int(query["start-time"]), int(query["end-time"])
        rollup = query.get("rollup", "true").lower() == "true"
        minutes = (end - start) // MIN
        size = 1 if minutes <= 1459 else 10 if minutes <= 2940 else 60
        out = []
        for server in [MAIN, *TIERS]:
            for k, metric in enumerate(METRICS):
                path = metric_path(metric, server)
                if len(path.split("|")) != len(pattern):
                    continue
                buckets: dict[int, list[int]] = {}
                for t in range(start, end, MIN):
                    p = minute_point(server, k, t)
                    if p:
                        b = buckets.setdefault(t - t % (size * MIN) if not rollup else start, [0, 0])
                        b[0] += p[0]
                        b[1] += p[1]
                span = minutes if rollup else size
                values = [
                    {"startTimeInMillis": t, "occurrences": 0, "current": 0, "min": 0, "max": 0,
                     "useRange": k == 0, "count": c, "sum": s,
                     "value": round(s / c) if k == 0 else round(s / span), "standardDeviation": 0}
                    for t, (c, s) in sorted(buckets.items())
                ]
                out.append({"metricId": 100 + k, "metricName": "METRIC DATA NOT FOUND" if not values else "BTM|x",
                            "metricPath": path, "frequency": "ONE_MIN" if rollup else ["ONE_MIN", "TEN_MIN", "SIXTY_MIN"][[1, 10, 60].index(size)],
                            "metricValues": values})
        out.append({"metricId": 9, "metricName": "BTM|x", "metricPath": "Overall Application Performance|Stall Count",
                    "frequency": "ONE_MIN", "metricValues": []})
        return out


def make_handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def reply(self, status: int, body: bytes | str, length: int | None = None) -> None:
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) if length is None else length))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            stub.log.append(("POST", self.path, dict(self.headers), raw))
            form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
            if self.path != "/controller/api/oauth/access_token":
                return self.reply(404, "not found")
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                return self.reply(400, "invalid content type")
            if form != {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}:
                return self.reply(401, "Failed to authenticate: invalid client credentials")
            stub.issued += 1
            token = f"tok-{stub.issued}"
            stub.tokens.add(token)
            self.reply(200, json.dumps({"access_token": token, "expires_in": stub.ttl}))

        def do_GET(self) -> None:
            stub.log.append(("GET", self.path, dict(self.headers), b""))
            auth = self.headers.get("Authorization", "")
            basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if not (auth == basic or (stub.accept_tokens and auth.removeprefix("Bearer ") in stub.tokens)):
                return self.reply(401, "HTTP Status 401 - Unauthorized")
            url = urlsplit(self.path)
            query = {k: unquote(v) for k, _, v in (p.partition("=") for p in url.query.split("&") if p)}
            parts = url.path.split("/")
            if url.path == "/controller/rest/applications":
                return self.reply(200, json.dumps([{"description": "", "id": 7, "name": "ABP", "accountGuid": "g"}]))
            if len(parts) != 6 or parts[5] != "metric-data":
                return self.reply(404, "no such endpoint")
            if unquote(parts[4]) != "ABP":
                return self.reply(400, f"Invalid application id {unquote(parts[4])} is specified")
            fault = stub.faults.pop(0) if stub.faults else ""
            if fault == "timeout":
                time.sleep(0.6)
            if fault.isdigit():
                return self.reply(int(fault), "fault injected")
            body = json.dumps(stub.metric_data(query), indent=2)
            if fault == "truncate":
                return self.reply(200, body[: len(body) // 2])
            if fault == "drop":  # promise more bytes than sent, then close
                self.close_connection = True
                return self.reply(200, body[:100], length=len(body))
            self.reply(200, body)

    return Handler


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(url: str, **kwargs) -> AppDynamicsClient:
    opts = {"client_id": CLIENT_ID, "client_secret": SECRET, "timeout_s": 2.0, "sleep": Sleeps()} | kwargs
    return AppDynamicsClient(url, **opts)


def as_map(result: FetchResult) -> dict[tuple[str, str, datetime], float]:
    return {(v.server, v.metric, v.hour): v.value for v in result.values}


def assert_matches_minute_data(result: FetchResult, hours: list[datetime]) -> None:
    got = as_map(result)
    for server in [MAIN, *TIERS]:
        for k, metric in enumerate(METRICS):
            for hour in hours:
                want = expected_hourly(server, k, hour)
                key = (server, metric.key, hour)
                if want is None:
                    assert key in result.missing and key not in got
                else:
                    assert got[key] == pytest.approx(want, rel=1e-12), key


def metric_requests(stub: Stub) -> list[dict[str, str]]:
    out = []
    for method, path, _, _ in stub.log:
        if method == "GET" and "metric-data" in path:
            out.append({k: unquote(v) for k, _, v in (p.partition("=") for p in urlsplit(path).query.split("&"))})
    return out


# ---- fetching ---------------------------------------------------------------------------------


def test_short_span_uses_one_rollup_window_per_hour(stub):
    state, url = stub
    hours = [T0 + i * HOUR for i in range(5)]
    result = client_for(url).fetch_hours("ABP", TIERS, T0, T0 + 5 * HOUR)
    assert_matches_minute_data(result, hours)
    assert result.requests == 1 + 5 * 2  # one token, two wildcard paths per hour
    assert [(q["metric-path"], q["rollup"]) for q in metric_requests(state)[:2]] == [
        ("Overall Application Performance|*", "true"),
        ("Overall Application Performance|*|*", "true"),
    ]
    assert {int(q["end-time"]) - int(q["start-time"]) for q in metric_requests(state)} == {3_600_000}
    assert ("ABPServer2", "cpm", GAP_HOUR) in result.missing
    assert len(result.values) + len(result.missing) == 3 * len(METRICS) * 5


def test_long_span_uses_chunks_without_rollup_and_agrees_with_hourly_rollups(stub):
    state, url = stub
    hours = [T0 + i * HOUR for i in range(60)]
    chunked = client_for(url, chunk_hours=50).fetch_hours("ABP", TIERS, T0, T0 + 60 * HOUR)
    queries = metric_requests(state)
    # 50 h comes back in 60-minute buckets, the 10 h remainder in 1-minute buckets.
    assert [(q["rollup"], (int(q["end-time"]) - int(q["start-time"])) // 3_600_000) for q in queries] == [
        ("false", 50), ("false", 50), ("false", 10), ("false", 10)
    ]
    assert all(q["time-range-type"] == "BETWEEN_TIMES" and q["output"] == "JSON" for q in queries)
    assert chunked.requests == 1 + 4
    assert_matches_minute_data(chunked, hours)
    hourly = client_for(url).fetch_hours("ABP", TIERS, T0 + 40 * HOUR, T0 + 60 * HOUR)
    for key, value in as_map(hourly).items():
        assert as_map(chunked)[key] == pytest.approx(value, rel=1e-12)
    assert len(hourly.values) == 20 * 3 * len(METRICS) - (0 if GAP_HOUR < T0 + 40 * HOUR else len(METRICS))


def test_only_complete_hours_inside_the_range_are_fetched(stub):
    _, url = stub
    result = client_for(url).fetch_hours("ABP", ["ABPServer1"], T0 + HOUR / 2, T0 + 3.5 * HOUR)
    assert sorted({v.hour for v in result.values}) == [T0 + HOUR, T0 + 2 * HOUR]
    assert {v.server for v in result.values} == {MAIN, "ABPServer1"}  # ABPServer2 not asked for


def test_empty_range_makes_no_requests(stub):
    state, url = stub
    result = client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR / 2)
    assert result == FetchResult([], [], 0) and state.log == []


def test_metric_path_and_application_are_percent_encoded(stub):
    state, url = stub
    client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    gets = [path for method, path, _, _ in state.log if method == "GET"]
    assert gets[0].startswith("/controller/rest/applications/ABP/metric-data?metric-path=Overall%20Application%20Performance%7C*&")
    with pytest.raises(UnknownApplication):
        client_for(url).fetch_hours("ABP Batch/2", TIERS, T0, T0 + HOUR)
    assert state.log[-1][1].startswith("/controller/rest/applications/ABP%20Batch%2F2/metric-data?")


def test_applications_lists_the_controller_applications(stub):
    _, url = stub
    assert client_for(url).applications() == [{"description": "", "id": 7, "name": "ABP", "accountGuid": "g"}]


# ---- authentication ---------------------------------------------------------------------------


def test_token_request_is_a_form_post_and_the_token_is_reused(stub):
    state, url = stub
    client = client_for(url)
    client.fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    second = client.fetch_hours("ABP", TIERS, T0 + HOUR, T0 + 2 * HOUR)
    posts = [entry for entry in state.log if entry[0] == "POST"]
    assert len(posts) == 1 and second.requests == 2
    _, path, headers, raw = posts[0]
    assert path == "/controller/api/oauth/access_token"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(raw.decode()) == {"grant_type": ["client_credentials"], "client_id": [CLIENT_ID], "client_secret": [SECRET]}
    assert all(h["Authorization"] == "Bearer tok-1" for m, _, h, _ in state.log if m == "GET")


def test_token_is_refreshed_shortly_before_it_expires(stub):
    state, url = stub
    state.ttl = 100.0
    now = [1000.0]
    client = client_for(url, clock=lambda: now[0])
    client.applications()
    now[0] += 89.0  # inside the validity minus the early-refresh margin (10 s)
    client.applications()
    assert state.issued == 1
    now[0] += 2.0
    client.applications()
    assert state.issued == 2


def test_a_revoked_token_is_replaced_once_after_a_401(stub):
    state, url = stub
    client = client_for(url)
    client.applications()
    state.tokens.clear()  # the controller forgot every token (restart, revocation)
    result = client.fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert state.issued == 2
    assert result.requests == 1 + 1 + 1 + 1  # refused GET, new token, GET again, second path
    assert len(result.values) > 0


def test_token_refused_even_when_fresh_raises_auth_failed(stub):
    state, url = stub
    state.accept_tokens = False
    with pytest.raises(AuthFailed) as err:
        client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert str(err.value) == (
        "AppDynamics refused the API client's token for /controller/rest/applications/ABP/metric-data "
        "(HTTP 401), even a fresh one. Check source.client_id (name@account) and source.client_secret "
        "in artq.yml, or ARTQ_SOURCE_CLIENT_ID / ARTQ_SOURCE_CLIENT_SECRET."
    )
    assert state.issued == 2


def test_wrong_secret_raises_auth_failed_without_retrying_or_leaking(stub, caplog):
    state, url = stub
    caplog.set_level(logging.DEBUG)
    client = client_for(url, client_secret="wrong-secret-42")
    with pytest.raises(AuthFailed) as err:
        client.fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert str(err.value) == (
        "AppDynamics refused the API client credentials at /controller/api/oauth/access_token (HTTP 401). "
        "Check source.client_id (name@account) and source.client_secret in artq.yml, or "
        "ARTQ_SOURCE_CLIENT_ID / ARTQ_SOURCE_CLIENT_SECRET."
    )
    assert len(state.log) == 1
    for text in (str(err.value), repr(client), caplog.text):
        assert "wrong-secret-42" not in text


def test_basic_auth_when_no_client_credentials(stub):
    state, url = stub
    client = AppDynamicsClient(url, username=USER, password=PASSWORD)
    assert client.fetch_hours("ABP", TIERS, T0, T0 + HOUR).requests == 2
    assert not any(m == "POST" for m, *_ in state.log)
    assert PASSWORD not in repr(client)
    with pytest.raises(AuthFailed, match=r"refused the username and password .*\(HTTP 401\)"):
        AppDynamicsClient(url, username=USER, password="nope").applications()


def test_from_settings_picks_basic_when_only_username_and_password_are_set(stub):
    _, url = stub
    basic = AppDynamicsClient.from_settings(SourceSettings(username=USER, password=PASSWORD), base_url=url)
    assert repr(basic) == f"AppDynamicsClient({url!r}, auth='basic')"
    oauth = AppDynamicsClient.from_settings(SourceSettings(url=url, client_id=CLIENT_ID, client_secret=SECRET))
    assert oauth.applications()[0]["name"] == "ABP"


def test_threads_sharing_a_client_share_one_token_and_count_their_own_requests(stub):
    state, url = stub
    client = client_for(url)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: client.fetch_hours("ABP", TIERS, T0 + i * HOUR, T0 + (i + 1) * HOUR), range(8)))
    assert state.issued == 1
    assert sum(r.requests for r in results) == 1 + 8 * 2
    assert_matches_minute_data(FetchResult([v for r in results for v in r.values], [m for r in results for m in r.missing], 0),
                               [T0 + i * HOUR for i in range(8)])


# ---- failures ---------------------------------------------------------------------------------


def test_server_errors_are_retried_with_growing_backoff(stub):
    state, url = stub
    state.faults = ["500", "503"]
    sleeps = Sleeps()
    result = client_for(url, sleep=sleeps).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert result.requests == 1 + 3 + 1
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 0.75 and 1.0 <= sleeps[1] <= 1.5
    assert_matches_minute_data(result, [T0])


def test_exhausted_retries_raise_source_unavailable_naming_the_path(stub):
    state, url = stub
    state.faults = ["502"] * 4
    sleeps = Sleeps()
    with pytest.raises(SourceUnavailable) as err:
        client_for(url, retries=3, sleep=sleeps).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert str(err.value) == (
        "AppDynamics at /controller/rest/applications/ABP/metric-data is unavailable: HTTP 502 after 4 "
        "attempts. Check that the controller is reachable at source.url, or retry later."
    )
    assert len(sleeps) == 3 and SECRET not in str(err.value)


def test_timeouts_are_retried(stub):
    state, url = stub
    state.faults = ["timeout"]
    result = client_for(url, timeout_s=0.3).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert result.requests == 1 + 2 + 1
    state.faults = ["timeout", "timeout"]
    with pytest.raises(SourceUnavailable, match="unavailable: timed out after 2 attempts"):
        client_for(url, timeout_s=0.3, retries=1).fetch_hours("ABP", TIERS, T0, T0 + HOUR)


def test_connection_dropped_mid_body_is_retried(stub):
    state, url = stub
    state.faults = ["drop"]
    result = client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert result.requests == 1 + 2 + 1


def test_connection_refused_raises_source_unavailable():
    with pytest.raises(SourceUnavailable, match="connection failed after 3 attempts"):
        client_for("http://127.0.0.1:9", retries=2).applications()


def test_client_errors_are_not_retried(stub):
    state, url = stub
    state.faults = ["404"]
    with pytest.raises(UnknownApplication):
        client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert len(state.log) == 2


def test_forbidden_raises_auth_failed_at_once(stub):
    state, url = stub
    state.faults = ["403"]
    with pytest.raises(AuthFailed) as err:
        client_for(url).fetch_hours("ABP", TIERS, T0, T0 + HOUR)
    assert str(err.value) == (
        "AppDynamics refused access to /controller/rest/applications/ABP/metric-data (HTTP 403): the "
        "credentials work but lack permission. Give the API client or user a role that can view the "
        "application's metrics."
    )
    assert len(state.log) == 2


def test_base_url_loses_credentials_and_a_trailing_controller(stub):
    _, url = stub
    client = client_for(url.replace("http://", "http://someone:hunter2@") + "/controller/")
    assert repr(client) == f"AppDynamicsClient({url!r}, auth='oauth')"
    assert client.applications()[0]["id"] == 7
    with pytest.raises(ConfigError, match="`source.url` is not set"):
        AppDynamicsClient.from_settings(SourceSettings())


def test_unknown_application_says_to_check_the_config(stub):
    _, url = stub
    with pytest.raises(UnknownApplication) as err:
        client_for(url).fetch_hours("NOPE", TIERS, T0, T0 + HOUR)
    assert str(err.value) == (
        "the controller does not know application 'NOPE' (HTTP 400: Invalid application id NOPE is "
        "specified). Check `applications` in artq.yml against the names the controller lists at "
        "/controller/rest/applications."
    )


def test_truncated_json_raises_invalid_response_at_once(stub):
    state, url = stub
    state.faults = ["", "", "truncate"]
    with pytest.raises(InvalidResponse, match="^metric-data response: the body is not complete JSON"):
        client_for(url).fetch_hours("ABP", TIERS, T0, T0 + 2 * HOUR)
    assert len([m for m, *_ in state.log if m == "GET"]) == 3


# ---- against the simulator ------------------------------------------------------------------

SIM_NOW = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
SIM_END = datetime(2026, 11, 26, 7, tzinfo=UTC)  # the last complete hour ends here
SIM_TIERS = ["ABPServer1", "ABPServer2", "CollectionServer"]
SIM_SECRET = "sim-secret-8Hk"


class SimClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def sim_config(clock: SimClock, **app: object) -> SimulatorConfig:
    # minute_gap_rate=0: every reported hour has all 60 minutes (see the gaps test below);
    # outages_per_week=5: whole hours without data, which must come back as `missing`.
    return SimulatorConfig(
        seed=7,
        applications=[SimApp(name="ABP", tiers=SIM_TIERS, **({"minute_gap_rate": 0.0, "outages_per_week": 5.0} | app))],
        client_id=CLIENT_ID, client_secret=SIM_SECRET, username="ops", password=PASSWORD,
        token_ttl_s=300, now=clock,
    )


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[object, World, SimClock]]:
    clock = SimClock(SIM_NOW)
    cfg = sim_config(clock)
    with start_simulator(cfg) as server:
        yield server, World(cfg), clock


@pytest.fixture()
def sim_client(sim) -> Iterator[AppDynamicsClient]:
    server, _, clock = sim
    server.set_faults(Faults())
    clock.t = SIM_NOW
    client = AppDynamicsClient(server.url, client_id=CLIENT_ID, client_secret=SIM_SECRET, sleep=Sleeps())
    yield client
    client.close()


def world_truth(world: World, start: datetime, end: datetime) -> tuple[dict, set]:
    values, missing = {}, set()
    for server in [MAIN, *SIM_TIERS]:
        for metric in METRICS:
            for hour, v in world.hourly("ABP", server, metric.key, start, end).items():
                key = (server, metric.key, hour.to_pydatetime())
                if math.isnan(v):
                    missing.add(key)
                else:
                    values[key] = v
    return values, missing


def assert_equals_truth(result: FetchResult, truth: tuple[dict, set]) -> None:
    values, missing = truth
    got = as_map(result)
    assert set(result.missing) == missing
    assert got.keys() == values.keys()
    for key, want in values.items():
        assert got[key] == pytest.approx(want, rel=1e-12), key


def test_simulator_week_in_chunks_equals_world_truth(sim, sim_client):
    _, world, _ = sim
    start = SIM_END - 200 * HOUR  # 168 h in 60-minute buckets, then 32 h in 10-minute buckets
    result = sim_client.fetch_hours("ABP", SIM_TIERS, start, SIM_END)
    assert result.requests == 1 + 2 * 2
    assert_equals_truth(result, world_truth(world, start, SIM_END))
    assert result.missing, "outages_per_week=5 should leave some hours without data"


def test_simulator_hourly_rollups_agree_with_chunks(sim, sim_client):
    _, world, _ = sim
    start = SIM_END - 50 * HOUR  # ≥ 49 h: one chunk, answered in 60-minute buckets
    hourly = sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - 24 * HOUR, SIM_END)
    chunked = sim_client.fetch_hours("ABP", SIM_TIERS, start, SIM_END)
    assert hourly.requests == 1 + 24 * 2 and chunked.requests == 2
    wanted = {k: v for k, v in as_map(chunked).items() if k[2] >= SIM_END - 24 * HOUR}
    assert as_map(hourly).keys() == wanted.keys()
    for key, value in as_map(hourly).items():
        assert value == pytest.approx(wanted[key], rel=1e-12), key
    assert_equals_truth(hourly, world_truth(world, SIM_END - 24 * HOUR, SIM_END))


def test_simulator_minute_gaps_make_coarse_counters_per_bucket_minute(sim):
    # With reporting gaps, World.hourly divides a counter by the minutes that reported; a
    # 60-minute bucket or a rollup only says how many minutes it spans, so the client divides
    # by 60 (spec §4.4: value = sum / minutes in the bucket). ART is exact either way.
    clock = SimClock(SIM_NOW)
    cfg = sim_config(clock, minute_gap_rate=0.02, outages_per_week=0.0)
    start = SIM_END - 168 * HOUR
    with start_simulator(cfg) as server:
        client = AppDynamicsClient(server.url, client_id=CLIENT_ID, client_secret=SIM_SECRET)
        got = as_map(client.fetch_hours("ABP", SIM_TIERS, start, SIM_END))
    truth, _ = world_truth(World(cfg), start, SIM_END)
    assert got.keys() == truth.keys()
    short = 0
    for (server, key, hour), want in truth.items():
        value = got[(server, key, hour)]
        if key == "art" or want == 0:
            assert value == pytest.approx(want, rel=1e-12)
        else:
            assert want * 50 / 60 <= value <= want * (1 + 1e-12)
            short += value < want * (1 - 1e-12)
    assert short > 0


def test_simulator_wrong_secret_raises_auth_failed(sim):
    server, _, _ = sim
    client = AppDynamicsClient(server.url, client_id=CLIENT_ID, client_secret="not-it")
    with pytest.raises(AuthFailed, match=r"refused the API client credentials .*\(HTTP 401\)"):
        client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)


def test_simulator_expired_token_is_refreshed_once(sim, sim_client):
    _, _, clock = sim
    sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)
    clock.t = SIM_NOW + timedelta(seconds=301)  # the controller's clock passes the token's expiry
    result = sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)
    assert result.requests == 1 + 1 + 1 + 1  # refused GET, new token, GET again, second path
    assert len(result.values) > 0


def test_simulator_tokens_expired_on_arrival_raise_auth_failed():
    class Racing(SimClock):  # every look at the controller's clock is 10 minutes later
        def __call__(self) -> datetime:
            self.t += timedelta(minutes=10)
            return self.t

    with start_simulator(sim_config(Racing(SIM_NOW))) as server:
        client = AppDynamicsClient(server.url, client_id=CLIENT_ID, client_secret=SIM_SECRET)
        with pytest.raises(AuthFailed, match="even a fresh one"):
            client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)


def test_simulator_basic_auth(sim):
    server, world, _ = sim
    client = AppDynamicsClient(server.url, username="ops@customer1", password=PASSWORD)
    result = client.fetch_hours("ABP", SIM_TIERS, SIM_END - 2 * HOUR, SIM_END)
    assert result.requests == 4
    assert_equals_truth(result, world_truth(world, SIM_END - 2 * HOUR, SIM_END))


def test_simulator_faults(sim, sim_client):
    server, _, _ = sim
    server.set_faults(Faults(fail_next=2, error_status=504))
    assert sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END).requests == 1 + 3 + 1
    server.set_faults(Faults(truncate_next=1))
    with pytest.raises(InvalidResponse, match="truncated or not JSON"):
        sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)
    server.set_faults(Faults(malformed_next=1))
    with pytest.raises(InvalidResponse, match="has no string `metricPath`"):
        sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)
    server.set_faults(Faults(error_rate=1.0))
    with pytest.raises(SourceUnavailable, match="HTTP 503 after 4 attempts"):
        sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - HOUR, SIM_END)


def test_simulator_missing_paths_and_hours_are_reported(sim, sim_client):
    server, _, _ = sim
    gone = SIM_END - 2 * HOUR
    server.set_faults(Faults(missing_paths=frozenset({"Overall Application Performance|ABPServer2|Calls per Minute"}),
                             missing_hours=((gone, gone + HOUR),)))
    result = sim_client.fetch_hours("ABP", SIM_TIERS, SIM_END - 3 * HOUR, SIM_END)
    assert {("ABPServer2", "cpm", SIM_END - h * HOUR) for h in (1, 2, 3)} <= set(result.missing)
    assert {(s, m.key, gone) for s in [MAIN, *SIM_TIERS] for m in METRICS} <= set(result.missing)
    assert not any(v.hour == gone for v in result.values)


def test_simulator_unknown_application(sim, sim_client):
    with pytest.raises(UnknownApplication, match=r"^the controller does not know application 'Nope' \(HTTP 400: "
                                                 r"Invalid application id Nope is specified\)"):
        sim_client.fetch_hours("Nope", SIM_TIERS, SIM_END - HOUR, SIM_END)
    assert [a["name"] for a in sim_client.applications()] == ["ABP"]
