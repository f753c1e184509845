"""Property tests of artq.sources.parse: generated and mutated metric-data bodies.

Every body either parses, and then its hourly values equal an independent computation
(``oracle`` below), or raises InvalidResponse. No other exception may escape.
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from artq.catalog import MAIN, METRICS, OVERALL, Rollup
from artq.errors import InvalidResponse
from artq.sources.parse import Window, hourly_values, parse_metric_data

H0_MS = 1_793_577_600_000  # 2026-11-02T00:00Z
HOUR_MS = 3_600_000
MIN_MS = 60_000
SERVERS = [MAIN, "T1", "T2"]
STEP = {"ONE_MIN": 1, "TEN_MIN": 10, "SIXTY_MIN": 60}
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])



def nested(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers(-(2**70), 2**70) | floats | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )


garbage = nested(st.floats())  # NaN and infinities included: json.dumps writes them as bare words
json_garbage = nested(st.floats(allow_nan=False, allow_infinity=False))  # still valid JSON


# ---- valid payloads ----------------------------------------------------------------------------


@st.composite
def windows(draw: st.DrawFn) -> Window:
    start = H0_MS + draw(st.integers(0, 48)) * HOUR_MS
    rollup = draw(st.booleans())
    return Window(start, start + (1 if rollup else draw(st.integers(1, 3))) * HOUR_MS, rollup)


@st.composite
def points(draw: st.DrawFn, window: Window, frequency: str, average: bool) -> list[dict]:
    if window.rollup:
        starts = draw(st.lists(st.sampled_from([window.start_ms, window.start_ms + 17 * MIN_MS]), max_size=1))
    else:
        step = STEP[frequency] * MIN_MS
        first, last = window.start_ms // step - 2, window.end_ms // step + 2  # a few buckets outside
        starts = sorted(draw(st.sets(st.integers(first, last - 1), max_size=12)))
        starts = [k * step for k in starts]
    out = []
    for t in starts:
        count = draw(st.integers(0, 50_000))
        total = 0 if average and count == 0 else draw(st.integers(0, 10**9))
        value = round(total / count) if count else 0
        p = {"startTimeInMillis": t, "occurrences": 1, "current": value, "min": 0, "max": 0, "useRange": average,
             "count": count, "sum": total, "value": value, "standardDeviation": 0}
        if draw(st.integers(0, 9)) == 0:
            p = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in p.items()}
        out.append(p)
    return out


@st.composite
def payloads(draw: st.DrawFn) -> tuple[list[dict], Window]:
    window = draw(windows())
    read = [(s, m) for s in SERVERS for m in METRICS]
    chosen = draw(st.lists(st.sampled_from(read), unique=True, max_size=len(read)))
    entries = []
    for server, metric in chosen:
        path = f"{OVERALL}|{metric.leaf}" if server == MAIN else f"{OVERALL}|{server}|{metric.leaf}"
        frequency = draw(st.sampled_from(list(STEP)))
        values = draw(points(window, frequency, metric.rollup is Rollup.AVERAGE))
        name = "METRIC DATA NOT FOUND" if not values and draw(st.booleans()) else "BTM|Application Summary|x"
        entries.append({"metricId": len(entries) + 1, "metricName": name, "metricPath": path,
                        "frequency": frequency, "metricValues": values})
    ignored = [f"{OVERALL}|Stall Count", f"{OVERALL}|TX|Calls per Minute", "Backends|db|Calls per Minute",
               f"{OVERALL}|T1|Individual Nodes|n1|Calls per Minute"]
    for path in draw(st.lists(st.sampled_from(ignored), unique=True, max_size=2)):
        entries.append({"metricPath": path, "frequency": draw(st.text(max_size=4)), "metricValues": draw(json_garbage)})
    return draw(st.permutations(entries)), window


def oracle(payload: list[dict], window: Window) -> tuple[dict, set]:
    """Hourly values computed independently of parse.py, for a payload it accepted."""
    leaves = {m.leaf: m for m in METRICS}
    acc: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0, 0, 0, False])
    for e in payload:
        parts = e["metricPath"].split("|")
        if parts[0] != OVERALL or len(parts) not in (2, 3) or parts[-1] not in leaves:
            continue
        server = MAIN if len(parts) == 2 else parts[1]
        if server not in SERVERS:
            continue
        metric = leaves[parts[-1]]
        for v in e["metricValues"]:
            t = int(v["startTimeInMillis"])
            if window.rollup:
                hour, minutes = window.start_ms, 60
            elif window.start_ms <= t < window.end_ms:
                hour, minutes = t // HOUR_MS * HOUR_MS, STEP[e["frequency"]]
            else:
                continue
            a = acc[(server, metric.key, hour)]
            a[0] += int(v["sum"])
            a[1] += int(v["count"])
            a[2] += minutes
            a[3] = a[3] or min(int(v["sum"]), int(v["count"]), int(v["value"])) < 0  # a gap, never a value
    values = {}
    for (server, key, hour), (s, c, minutes, negative) in acc.items():
        if negative:
            continue
        average = next(m for m in METRICS if m.key == key).rollup is Rollup.AVERAGE
        if average and c == 0:
            continue
        values[(server, key, datetime.fromtimestamp(hour / 1000, UTC))] = s / c if average else s / minutes
    hours = [datetime.fromtimestamp(t / 1000, UTC) for t in range(window.start_ms, window.end_ms, HOUR_MS)]
    expected = {(s, m.key, h) for s in SERVERS for m in METRICS for h in hours}
    return values, expected - set(values)


def run(text: str | bytes, window: Window) -> tuple[dict, set]:
    hours = [datetime.fromtimestamp(window.start_ms / 1000, UTC) + timedelta(hours=i)
             for i in range((window.end_ms - window.start_ms) // HOUR_MS)]
    values, missing = hourly_values(parse_metric_data(text, window, SERVERS), SERVERS, hours)
    assert len(missing) == len(set(missing))
    return {(v.server, v.metric, v.hour): v.value for v in values}, set(missing)


def assert_agrees(payload: Any, window: Window, got: tuple[dict, set]) -> None:
    want_values, want_missing = oracle(payload, window)
    assert got[1] == want_missing
    assert got[0].keys() == want_values.keys()
    for key, value in want_values.items():
        assert math.isfinite(got[0][key]) and got[0][key] == pytest.approx(value, rel=1e-12), key


# ---- properties --------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=1000)
@given(payloads())
def test_valid_payloads_parse_and_match_an_independent_computation(case):
    payload, window = case
    got = run(json.dumps(payload), window)
    event(f"hours with a value: {'none' if not got[0] else 'some'}")
    assert_agrees(payload, window, got)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[Any, Window]:
    """A valid payload with 1-3 random edits anywhere: drop, replace, negate, stringify, garble."""
    payload, window = draw(payloads())
    doc: Any = copy.deepcopy(payload)
    for _ in range(draw(st.integers(1, 3))):
        parent, key = None, None
        node = doc
        while isinstance(node, (list, dict)) and node and draw(st.integers(0, 3)) > 0:
            parent, key = node, draw(st.sampled_from(list(node.keys()) if isinstance(node, dict) else range(len(node))))
            node = node[key]
        op = draw(st.sampled_from(["drop", "garbage", "negate", "stringify", "nan", "fraction", "duplicate"]))
        if parent is None:
            doc = draw(garbage) if op == "garbage" else doc
            continue
        if op == "drop":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(node))
        elif op == "negate" and isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[key] = -node - 1
        elif op == "stringify":
            parent[key] = str(node)
        elif op == "nan":
            parent[key] = math.nan
        elif op == "fraction" and isinstance(node, (int, float)) and not isinstance(node, bool):
            parent[key] = node + 0.5
        else:
            parent[key] = draw(garbage)
    return doc, window


@settings(SETTINGS, max_examples=2500)
@given(mutated())
def test_mutated_payloads_parse_correctly_or_raise_invalid_response(case):
    doc, window = case
    try:
        got = run(json.dumps(doc), window)
    except InvalidResponse:
        event("rejected")
        return
    event("accepted")
    assert_agrees(doc, window, got)  # accepted: it must still be right


BREAKERS = {
    "drop": None,
    "negative": -7,
    "string": "12",
    "nan": math.nan,
    "infinity": math.inf,
    "fraction": 2.5,
    "bool": True,
    "null": None,
    "nested": {"sum": [1, {"x": 2}]},
    "huge": 2**64,
}


@settings(SETTINGS, max_examples=800)
@given(payloads(), st.data())
def test_breaking_a_required_field_of_a_read_metric_is_always_rejected(case, data):
    payload, window = case
    targets = [e for e in payload if "metricId" in e and e["metricValues"]]  # read metrics with data
    if not targets:
        event("no read metric with data to break")
        return
    entry = data.draw(st.sampled_from(targets))
    breaker = data.draw(st.sampled_from(sorted(BREAKERS)))
    if data.draw(st.booleans()):
        item = data.draw(st.sampled_from(entry["metricValues"]))
        key = data.draw(st.sampled_from(["startTimeInMillis", "count", "sum", "value"]))
    else:
        item, key = entry, data.draw(st.sampled_from(["frequency", "metricValues"]))
        if breaker in ("negative", "fraction", "huge"):
            breaker = "string"
    if breaker == "negative" and key != "startTimeInMillis":
        breaker = "string"  # a negative count, sum or value is well-formed: a gap (tested below), not an error
    if breaker == "drop":
        del item[key]
    else:
        item[key] = BREAKERS[breaker]
    with pytest.raises(InvalidResponse):
        run(json.dumps(payload), window)


@settings(SETTINGS, max_examples=600)
@given(payloads(), st.data())
def test_truncated_or_garbled_text_never_escapes_as_another_exception(case, data):
    payload, window = case
    text = json.dumps(payload, indent=data.draw(st.sampled_from([None, 2])))
    cut = data.draw(st.integers(0, len(text) - 1))
    if data.draw(st.booleans()):
        with pytest.raises(InvalidResponse):
            run(text[:cut], window)  # a JSON array missing its end is never valid
        return
    garbled = text[:cut] + data.draw(st.text(min_size=1, max_size=3)) + text[cut + 1:]
    try:
        got = run(garbled.encode("utf-8", "surrogatepass"), window)
    except InvalidResponse:
        event("garbled: rejected")
        return
    event("garbled: accepted")
    assert_agrees(json.loads(garbled), window, got)


@settings(SETTINGS, max_examples=300)
@given(payloads(), st.data())
def test_a_negative_count_sum_or_value_makes_its_hour_a_rejected_gap(case, data):
    payload, window = case
    targets = [(e, v) for e in payload if "metricId" in e for v in e["metricValues"]
               if window.rollup or window.start_ms <= v["startTimeInMillis"] < window.end_ms]
    if not targets:
        event("no in-window bucket to break")
        return
    entry, item = data.draw(st.sampled_from(targets))
    item[data.draw(st.sampled_from(["count", "sum", "value"]))] = -data.draw(st.integers(1, 2**63))
    hours = [datetime.fromtimestamp(window.start_ms / 1000, UTC) + timedelta(hours=i)
             for i in range((window.end_ms - window.start_ms) // HOUR_MS)]
    rejected: list = []
    values, missing = hourly_values(parse_metric_data(json.dumps(payload), window, SERVERS), SERVERS, hours, rejected)
    hour = datetime.fromtimestamp((window.start_ms if window.rollup else item["startTimeInMillis"] // HOUR_MS * HOUR_MS) / 1000, UTC)
    path = entry["metricPath"].split("|")
    key = (MAIN if len(path) == 2 else path[1], next(m.key for m in METRICS if m.leaf == path[-1]), hour)
    assert key in missing and key not in {(v.server, v.metric, v.hour) for v in values}
    assert (*key, "negative count, sum or value from the controller") in rejected
