"""The simulator's REST API over real HTTP: auth, listings, metric-data rules, XML, faults."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest
import requests

from artq.catalog import MAIN
from artq.sources.simulator import Faults, SimApp, SimulatorConfig, start_simulator

NOW = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
T0 = int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp() * 1000)  # an hour well in the past
HOUR, MINUTE = 3_600_000, 60_000
ART = "Overall Application Performance|Average Response Time (ms)"
CPM = "Overall Application Performance|Calls per Minute"
TIER_CPM = "Overall Application Performance|ABPServer3|Calls per Minute"
VALUE_KEYS = ["startTimeInMillis", "occurrences", "current", "min", "max", "useRange", "count", "sum",
              "value", "standardDeviation"]


class Clock:
    """An injectable clock tests can move forward."""

    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def config(clock: Clock, **kw: object) -> SimulatorConfig:
    apps = [SimApp("ABP"), SimApp("Billing Batch", tiers=["batch", "ledger"])]
    return SimulatorConfig(seed=42, applications=apps, client_id="artq@customer1", client_secret="s3cret",
                           username="api", password="pw", token_ttl_s=300, now=clock, **kw)


@pytest.fixture(scope="module")
def sim():
    with start_simulator(config(Clock(NOW))) as s:
        yield s


@pytest.fixture()
def api(sim):
    sim.set_faults(Faults())
    session = requests.Session()
    session.auth = ("api@customer1", "pw")
    base = f"{sim.url}/controller/rest/applications"

    def get(path: str = "", **params: object) -> requests.Response:
        return session.get(base + path, params=params, timeout=10)

    return get


def metric_data(get, path: str, **params: object) -> requests.Response:
    params.setdefault("time-range-type", "BETWEEN_TIMES")
    if params["time-range-type"] == "BETWEEN_TIMES":
        params.setdefault("start-time", T0)
        params.setdefault("end-time", T0 + HOUR)
    params.setdefault("output", "JSON")
    return get("/ABP/metric-data", **{"metric-path": path, **params})


def token(sim, secret: str = "s3cret", **kw: object) -> requests.Response:
    data = {"grant_type": "client_credentials", "client_id": "artq@customer1", "client_secret": secret}
    return requests.post(f"{sim.url}/controller/api/oauth/access_token", data=data, timeout=10, **kw)


# ---- authentication ----------------------------------------------------------------------

def test_token_from_form_body_works_as_bearer(sim) -> None:
    r = token(sim)
    assert r.status_code == 200 and r.json()["expires_in"] == 300
    got = requests.get(f"{sim.url}/controller/rest/applications", params={"output": "JSON"},
                       headers={"Authorization": f"Bearer {r.json()['access_token']}"}, timeout=10)
    assert got.status_code == 200 and got.json()[0]["name"] == "ABP"


def test_token_accepts_protobuf_content_type_and_query_string_fields(sim) -> None:
    r = requests.post(f"{sim.url}/controller/api/oauth/access_token", timeout=10,
                      data="grant_type=client_credentials&client_id=artq%40customer1&client_secret=s3cret",
                      headers={"Content-Type": "application/vnd.appd.cntrl+protobuf;v=1"})
    assert r.status_code == 200 and r.json()["access_token"].count(".") == 2
    q = requests.post(f"{sim.url}/controller/api/oauth/access_token", timeout=10,
                      params={"grant_type": "client_credentials", "client_id": "artq@customer1",
                              "client_secret": "s3cret"},
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert q.status_code == 200


def test_token_with_bad_secret_is_401_and_json_body_is_refused(sim) -> None:
    assert token(sim, secret="wrong").status_code == 401
    r = requests.post(f"{sim.url}/controller/api/oauth/access_token", timeout=10,
                      json={"grant_type": "client_credentials", "client_id": "artq@customer1", "client_secret": "s3cret"})
    assert r.status_code == 415 and "x-www-form-urlencoded" in r.text


def test_expired_token_is_401_after_the_clock_passes_its_ttl() -> None:
    clock = Clock(NOW)
    with start_simulator(config(clock)) as s:
        tok = token(s).json()["access_token"]
        hdr = {"Authorization": f"Bearer {tok}"}
        url = f"{s.url}/controller/rest/applications"
        assert requests.get(url, headers=hdr, timeout=10).status_code == 200
        clock.t = NOW + timedelta(seconds=301)
        r = requests.get(url, headers=hdr, timeout=10)
        assert r.status_code == 401 and "expired" in r.text


def test_basic_auth_good_bad_and_missing(sim) -> None:
    url = f"{sim.url}/controller/rest/applications"
    assert requests.get(url, auth=("api@customer1", "pw"), timeout=10).status_code == 200
    assert requests.get(url, auth=("api@customer1", "nope"), timeout=10).status_code == 401
    assert requests.get(url, auth=("api@other", "pw"), timeout=10).status_code == 401
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    assert requests.get(url, headers={"Authorization": "Bearer made-up"}, timeout=10).status_code == 401


# ---- listings ----------------------------------------------------------------------------

def test_applications_have_every_field_and_xml_is_the_default(api) -> None:
    apps = api(output="JSON").json()
    assert [a["name"] for a in apps] == ["ABP", "Billing Batch"]
    assert all(set(a) == {"id", "name", "description", "accountGuid"} for a in apps)
    root = ElementTree.fromstring(api().content)
    assert root.tag == "applications" and root.find("application/name").text == "ABP"


def test_application_by_name_with_spaces_or_by_id(api) -> None:
    by_name = api("/Billing%20Batch", output="json").json()
    by_id = api(f"/{by_name[0]['id']}", output="json").json()
    assert by_name == by_id and by_name[0]["name"] == "Billing Batch"


def test_unknown_application_is_400_plain_text(api) -> None:
    r = api("/NoSuchApp/tiers", output="JSON")
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("text/plain") and "NoSuchApp" in r.text


def test_unknown_application_status_is_configurable() -> None:
    with start_simulator(config(Clock(NOW), unknown_app_status=404)) as s:
        r = requests.get(f"{s.url}/controller/rest/applications/Nope/tiers", auth=("api@customer1", "pw"), timeout=10)
        assert r.status_code == 404


def test_tiers_nodes_bts_and_backends_carry_the_fields_clients_require(api) -> None:
    tiers = api("/ABP/tiers", output="JSON").json()
    assert [t["name"] for t in tiers][:2] == ["ABPServer1", "ABPServer2"] and len(tiers) == 7
    assert all(t["agentType"] == "APP_AGENT" and t["numberOfNodes"] >= 1 for t in tiers)
    nodes = api("/ABP/nodes", output="JSON").json()
    assert len(nodes) == sum(t["numberOfNodes"] for t in tiers)
    assert {"machineAgentVersion", "appAgentVersion", "tierId", "tierName", "machineId"} <= set(nodes[0])
    tier_nodes = api("/ABP/tiers/ABPServer2/nodes", output="JSON").json()
    assert {n["tierName"] for n in tier_nodes} == {"ABPServer2"} and len(tier_nodes) == tiers[1]["numberOfNodes"]
    bts = api("/ABP/business-transactions", output="JSON").json()
    assert {"entryPointType", "internalName", "background", "tierId", "tierName"} <= set(bts[0])
    backends = api("/ABP/backends", output="JSON").json()
    assert {b["exitPointType"] for b in backends} <= {"HTTP", "DB", "CACHE", "WEB_SERVICE", "MODULE"}


def test_metric_tree_one_level_per_call_and_unknown_folder_is_empty(api) -> None:
    top = api("/ABP/metrics", output="JSON").json()
    assert top == [{"name": "Overall Application Performance", "type": "folder"}]
    level = api("/ABP/metrics", output="JSON", **{"metric-path": "Overall Application Performance"}).json()
    assert {"name": "ABPServer1", "type": "folder"} in level
    assert {"name": "Average Response Time (ms)", "type": "leaf"} in level
    tier = api("/ABP/metrics", output="JSON", **{"metric-path": "Overall Application Performance|ABPServer1"}).json()
    assert all(x["type"] == "leaf" for x in tier) and len(tier) >= 6
    r = api("/ABP/metrics", output="JSON", **{"metric-path": "Nope"})
    assert r.status_code == 200 and r.text == "[ ]"
    assert ElementTree.fromstring(api("/ABP/metrics").content).tag == "metric-items"


# ---- metric-data -------------------------------------------------------------------------

def test_per_minute_art_has_all_ten_integer_keys_and_value_is_sum_over_count(api) -> None:
    [entry] = metric_data(api, ART, rollup="false").json()
    assert entry["metricName"] == "BTM|Application Summary|Average Response Time (ms)"
    assert entry["frequency"] == "ONE_MIN" and entry["metricPath"] == ART
    pts = entry["metricValues"]
    assert 55 <= len(pts) <= 60  # a few minutes may be reporting gaps
    for p in pts:
        assert list(p) == VALUE_KEYS
        assert all(isinstance(p[k], int) for k in VALUE_KEYS if k != "useRange")
        assert p["useRange"] is True and p["occurrences"] == 1 and p["standardDeviation"] == 0
        assert p["value"] == int(p["sum"] / p["count"] + 0.5) and p["min"] <= p["value"] <= p["max"]
        assert p["startTimeInMillis"] % MINUTE == 0 and T0 <= p["startTimeInMillis"] < T0 + HOUR


def test_counter_per_minute_value_equals_sum_and_rollup_is_the_average_per_minute(api) -> None:
    [minutes] = metric_data(api, TIER_CPM, rollup="FALSE").json()
    for p in minutes["metricValues"]:
        assert p["value"] == p["sum"] == p["current"] and p["min"] == p["max"] == 0 and p["useRange"] is False
    [rolled] = metric_data(api, TIER_CPM, rollup="True").json()
    [r] = rolled["metricValues"]
    pts = minutes["metricValues"]
    assert r["sum"] == sum(p["sum"] for p in pts) and r["count"] == sum(p["count"] for p in pts)
    assert r["value"] == int(r["sum"] / len(pts) + 0.5) and r["current"] == pts[-1]["current"]
    assert r["occurrences"] == 0 and r["startTimeInMillis"] == T0


def test_rollup_defaults_to_true_and_art_rollup_is_count_weighted(api) -> None:
    [rolled] = metric_data(api, ART).json()
    [minutes] = metric_data(api, ART, rollup="false").json()
    [r] = rolled["metricValues"]
    pts = minutes["metricValues"]
    assert r["sum"] == sum(p["sum"] for p in pts) and r["count"] == sum(p["count"] for p in pts)
    assert r["value"] == int(r["sum"] / r["count"] + 0.5)
    assert r["min"] == min(p["min"] for p in pts) and r["max"] == max(p["max"] for p in pts)


@pytest.mark.parametrize(
    ("minutes", "frequency", "step"),
    [(1459, "ONE_MIN", MINUTE), (1460, "TEN_MIN", 10 * MINUTE), (2940, "TEN_MIN", 10 * MINUTE),
     (2941, "SIXTY_MIN", HOUR)],
)
def test_bucket_size_follows_range_length(api, minutes: int, frequency: str, step: int) -> None:
    end = T0 + HOUR
    [e] = metric_data(api, CPM, rollup="false", **{"start-time": end - minutes * MINUTE, "end-time": end}).json()
    assert e["frequency"] == frequency
    starts = [p["startTimeInMillis"] for p in e["metricValues"]]
    assert all(s % step == 0 for s in starts) and starts == sorted(starts)
    assert starts[0] >= end - minutes * MINUTE and starts[-1] < end


def test_hourly_buckets_match_the_worlds_truth_whatever_the_window(api, sim) -> None:
    start = T0 - 167 * HOUR
    [week] = metric_data(api, ART, rollup="false", **{"start-time": start, "end-time": T0 + HOUR}).json()
    [other] = metric_data(api, ART, rollup="false", **{"start-time": start - 48 * HOUR, "end-time": T0 - 10 * HOUR}).json()
    by_start = {p["startTimeInMillis"]: p for p in week["metricValues"]}
    overlap = [p for p in other["metricValues"] if p["startTimeInMillis"] in by_start]
    assert len(overlap) > 100 and all(p == by_start[p["startTimeInMillis"]] for p in overlap)
    truth = sim.world.hourly("ABP", MAIN, "art", datetime.fromtimestamp(start / 1000, UTC),
                             datetime.fromtimestamp((T0 + HOUR) / 1000, UTC))
    for p in week["metricValues"]:
        t = truth[datetime.fromtimestamp(p["startTimeInMillis"] / 1000, UTC)]
        assert p["sum"] / p["count"] == pytest.approx(t)


@pytest.mark.parametrize(
    ("params", "window"),
    [({"time-range-type": "BEFORE_NOW", "duration-in-mins": 30}, (-30, 0)),
     ({"time-range-type": "BEFORE_TIME", "end-time": T0 + HOUR, "duration-in-mins": 15}, None),
     ({"time-range-type": "AFTER_TIME", "start-time": T0, "duration-in-mins": 15}, None),
     ({"time-range-type": "BETWEEN_TIMES", "start-time": T0, "end-time": T0 + 20 * MINUTE}, None)],
)
def test_each_time_range_type_selects_its_window(api, params: dict, window) -> None:
    [e] = metric_data(api, CPM, rollup="false", **params).json()
    starts = [p["startTimeInMillis"] for p in e["metricValues"]]
    now = int(NOW.timestamp() * 1000)
    lo, hi = {
        "BEFORE_NOW": (now - 30 * MINUTE, now),
        "BEFORE_TIME": (T0 + 45 * MINUTE, T0 + HOUR),
        "AFTER_TIME": (T0, T0 + 15 * MINUTE),
        "BETWEEN_TIMES": (T0, T0 + 20 * MINUTE),
    }[params["time-range-type"]]
    assert starts and min(starts) >= lo and max(starts) < hi
    assert len(starts) >= (hi - lo) // MINUTE - 2


@pytest.mark.parametrize(
    ("params", "message"),
    [({"time-range-type": "SOMETIME"}, "time-range-type"),
     ({"time-range-type": "BEFORE_NOW"}, "duration-in-mins"),
     ({"time-range-type": "BEFORE_TIME", "duration-in-mins": 5}, "end-time"),
     ({"time-range-type": "AFTER_TIME", "duration-in-mins": 5}, "start-time"),
     ({"time-range-type": "BETWEEN_TIMES", "start-time": T0}, "end-time"),
     ({"time-range-type": "BETWEEN_TIMES", "start-time": "yesterday", "end-time": T0}, "whole number"),
     ({"time-range-type": "BETWEEN_TIMES", "start-time": T0, "end-time": T0 - 1}, "after"),
     ({"time-range-type": "BEFORE_NOW", "duration-in-mins": 0}, "positive"),
     ({"time-range-type": "BEFORE_NOW", "duration-in-mins": 5, "rollup": "maybe"}, "rollup")],
)
def test_invalid_parameters_are_400_plain_text_naming_the_problem(api, params: dict, message: str) -> None:
    r = api("/ABP/metric-data", output="JSON", **{"metric-path": CPM, **params})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("text/plain") and message in r.text


def test_before_now_ignores_an_empty_start_time(api) -> None:
    r = metric_data(api, CPM, **{"time-range-type": "BEFORE_NOW", "duration-in-mins": 60, "start-time": ""})
    assert r.status_code == 200 and r.json()[0]["metricValues"]


def test_wildcards_resolve_whole_segments_sorted_with_internal_names(api) -> None:
    app_level = metric_data(api, "Overall Application Performance|*").json()
    paths = [e["metricPath"] for e in app_level]
    assert paths == sorted(paths) and ART in paths and len(paths) == 7
    tiers = metric_data(api, "Overall Application Performance|*|*").json()
    assert len(tiers) == 7 * 7 and all(e["metricPath"].count("|") == 2 for e in tiers)
    cpm = metric_data(api, "Overall Application Performance|*|Calls per Minute").json()
    assert len(cpm) == 7
    e3 = next(e for e in cpm if e["metricPath"] == TIER_CPM)
    assert e3["metricName"].startswith("BTM|Application Summary|Component:") and e3["metricName"].endswith("|Calls per Minute")


def test_metric_ids_are_stable_and_distinct(api) -> None:
    a = {e["metricPath"]: e["metricId"] for e in metric_data(api, "Overall Application Performance|*|*").json()}
    b = {e["metricPath"]: e["metricId"] for e in metric_data(api, "Overall Application Performance|*|*", rollup="false").json()}
    assert a == b and len(set(a.values())) == len(a)


def test_unknown_path_is_empty_array_and_known_without_data_is_not_found(api) -> None:
    r = metric_data(api, "Overall Application Performance|NoTier|Calls per Minute")
    assert r.text == "[ ]"
    assert ElementTree.fromstring(metric_data(api, "Nope|x", output="XML").content).tag == "metric-datas"
    [stall] = metric_data(api, "Overall Application Performance|Stall Count").json()
    assert stall["metricName"] == "METRIC DATA NOT FOUND" and stall["metricValues"] == [] and stall["metricId"] > 0
    future = int((NOW + timedelta(hours=2)).timestamp() * 1000)
    [later] = metric_data(api, CPM, **{"start-time": future, "end-time": future + HOUR}).json()
    assert later["metricName"] == "METRIC DATA NOT FOUND"


def test_no_bucket_is_served_after_now(api) -> None:
    now = int(NOW.timestamp() * 1000)
    [e] = metric_data(api, CPM, rollup="false", **{"start-time": now - 10 * MINUTE, "end-time": now + HOUR}).json()
    assert max(p["startTimeInMillis"] for p in e["metricValues"]) + MINUTE <= now


def test_xml_metric_data_has_the_controller_element_names(api) -> None:
    root = ElementTree.fromstring(metric_data(api, CPM, output="XML", rollup="false").content)
    assert root.tag == "metric-datas"
    values = root.findall("metric-data/metricValues/metric-value")
    assert len(values) >= 55 and [c.tag for c in values[0]] == VALUE_KEYS
    assert root.find("metric-data/metricPath").text == CPM


def test_application_id_and_encoded_paths_reach_the_same_data(api, sim) -> None:
    by_name = metric_data(api, CPM).json()
    app_id = api("/ABP", output="JSON").json()[0]["id"]
    r = api(f"/{app_id}/metric-data", **{"metric-path": CPM, "time-range-type": "BETWEEN_TIMES",
                                          "start-time": T0, "end-time": T0 + HOUR, "output": "json"})
    raw = requests.get(f"{sim.url}/controller/rest/applications/ABP/metric-data?metric-path="
                       "Overall%20Application%20Performance%7CCalls%20per%20Minute&time-range-type=BETWEEN_TIMES"
                       f"&start-time={T0}&end-time={T0 + HOUR}&output=JSON", auth=("api@customer1", "pw"), timeout=10)
    assert r.json() == by_name == raw.json()


def test_same_seed_gives_identical_bytes_across_simulators() -> None:
    bodies = []
    for _ in range(2):
        with start_simulator(config(Clock(NOW))) as s:
            r = requests.get(f"{s.url}/controller/rest/applications/ABP/metric-data", auth=("api@customer1", "pw"),
                             params={"metric-path": "Overall Application Performance|*|*", "time-range-type": "BETWEEN_TIMES",
                                     "start-time": T0 - 24 * HOUR, "end-time": T0, "rollup": "false", "output": "JSON"},
                             timeout=10)
            bodies.append(r.content)
    assert bodies[0] == bodies[1] and len(bodies[0]) > 10_000


# ---- faults --------------------------------------------------------------------------------

def test_fail_next_fails_exactly_n_requests_with_the_chosen_status(api, sim) -> None:
    sim.set_faults(Faults(fail_next=2, error_status=504))
    assert [api(output="JSON").status_code for _ in range(3)] == [504, 504, 200]


def test_error_rate_one_always_fails_and_token_endpoint_is_spared_by_default(api, sim) -> None:
    sim.set_faults(Faults(error_rate=1.0, error_status=500))
    assert api(output="JSON").status_code == 500
    assert token(sim).status_code == 200


def test_truncated_body_is_invalid_json(api, sim) -> None:
    sim.set_faults(Faults(truncate_next=1))
    r = metric_data(api, CPM)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert metric_data(api, CPM).json()[0]["metricPath"] == CPM


def test_malformed_body_is_valid_json_with_wrong_types_and_missing_keys(api, sim) -> None:
    sim.set_faults(Faults(malformed_next=1))
    [e] = metric_data(api, CPM).json()
    assert "frequency" not in e and "metricPath" not in e
    assert isinstance(e["metricValues"][0]["sum"], str) and "value" not in e["metricValues"][0]


def test_missing_hours_drop_buckets_and_missing_paths_become_unknown(api, sim) -> None:
    hour = datetime.fromtimestamp(T0 / 1000, UTC)
    sim.set_faults(Faults(missing_hours=((hour, hour + timedelta(hours=1)),)))
    [gone] = metric_data(api, CPM).json()
    assert gone["metricName"] == "METRIC DATA NOT FOUND"
    [week] = metric_data(api, CPM, rollup="false", **{"start-time": T0 - 71 * HOUR, "end-time": T0 + HOUR}).json()
    assert T0 not in [p["startTimeInMillis"] for p in week["metricValues"]]
    sim.set_faults(Faults(missing_paths=frozenset({TIER_CPM})))
    assert metric_data(api, TIER_CPM).text == "[ ]"
    cpm = metric_data(api, "Overall Application Performance|*|Calls per Minute").json()
    assert TIER_CPM not in [e["metricPath"] for e in cpm] and len(cpm) == 6


def test_latency_and_concurrency_cap_answer_503_beyond_the_cap(api, sim) -> None:
    sim.set_faults(Faults(latency_s=0.3, max_in_flight=3))
    barrier = threading.Barrier(8)

    def call(_: int) -> int:
        barrier.wait()
        return api(output="JSON").status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(8)))
    assert codes.count(200) >= 1 and codes.count(503) >= 1 and set(codes) <= {200, 503}


# ---- odds and ends ---------------------------------------------------------------------------

def test_unknown_resource_is_404_and_writes_are_405(api, sim) -> None:
    assert api("/ABP/snapshots", output="JSON").status_code == 404
    r = requests.post(f"{sim.url}/controller/rest/applications", auth=("api@customer1", "pw"), timeout=10)
    assert r.status_code == 405
    assert requests.get(f"{sim.url}/controller/api/oauth/access_token", timeout=10).status_code == 405


def test_config_from_settings_takes_apps_seed_and_credentials() -> None:
    from artq.config import ApplicationSettings, Settings

    settings = Settings(applications=[ApplicationSettings(name="Shop", tiers=["web", "db"])])
    settings.simulator.seed = 7
    settings.source.username, settings.source.password = "ops@customer1", "pw"
    cfg = SimulatorConfig.from_settings(settings)
    assert [(a.name, a.tiers) for a in cfg.applications] == [("Shop", ["web", "db"])]
    assert (cfg.seed, cfg.client_id, cfg.username) == (7, settings.source.client_id, "ops@customer1")
    with start_simulator(cfg) as s:  # a username that carries its account is used as is
        r = requests.get(f"{s.url}/controller/rest/applications/Shop/tiers", auth=("ops@customer1", "pw"),
                         params={"output": "JSON"}, timeout=10)
        assert [t["name"] for t in r.json()] == ["web", "db"]


@pytest.mark.parametrize(("sent", "ignored_at_start"), [
    ("SIGINT", False),
    ("SIGINT", True),  # started as a background job (`cmd &` in a script, nohup): SIGINT inherited as ignored
    ("SIGTERM", False),  # kill, docker stop
])
def test_serve_runs_in_the_foreground_and_stops_cleanly_on_ctrl_c(tmp_path, sent, ignored_at_start) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("from artq.sources.simulator import SimulatorConfig, serve; "
            f"serve(SimulatorConfig(username='api', password='pw'), '127.0.0.1', {port})")
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignored_at_start else None
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, preexec_fn=start)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/controller/rest/applications", auth=("api@customer1", "pw"), timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "simulator did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        proc.send_signal(getattr(signal, sent))
        assert proc.wait(timeout=10) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_data_older_than_a_year_is_gone_and_a_huge_range_stays_cheap(api) -> None:
    old = int((NOW - timedelta(days=400)).timestamp() * 1000)
    [gone] = metric_data(api, CPM, **{"start-time": old, "end-time": old + HOUR}).json()
    assert gone["metricName"] == "METRIC DATA NOT FOUND"
    end = int((NOW - timedelta(days=362)).timestamp() * 1000)
    r = metric_data(api, ART, rollup="false", **{"start-time": 0, "end-time": end})  # from 1970
    points = r.json()[0]["metricValues"]
    assert r.status_code == 200 and r.json()[0]["frequency"] == "SIXTY_MIN"
    assert 24 * 2 <= len(points) <= 24 * 3  # only the days still within retention


def test_ten_minute_buckets_and_long_rollups_agree_with_the_minutes(api) -> None:
    end = T0 + HOUR
    [ten] = metric_data(api, ART, rollup="false", **{"start-time": end - 1460 * MINUTE, "end-time": end}).json()
    [ones] = metric_data(api, ART, rollup="false").json()  # the last hour, per minute
    for bucket in [p for p in ten["metricValues"] if p["startTimeInMillis"] >= T0]:
        inside = [p for p in ones["metricValues"] if 0 <= p["startTimeInMillis"] - bucket["startTimeInMillis"] < 10 * MINUTE]
        assert bucket["sum"] == sum(p["sum"] for p in inside) and bucket["count"] == sum(p["count"] for p in inside)
        assert bucket["max"] == max(p["max"] for p in inside) and bucket["current"] == inside[-1]["current"]
    [rolled] = metric_data(api, ART, **{"start-time": end - 1460 * MINUTE, "end-time": end}).json()
    assert rolled["frequency"] == "TEN_MIN"
    assert rolled["metricValues"][0]["count"] == sum(p["count"] for p in ten["metricValues"])
