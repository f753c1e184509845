"""Unit tests of artq.sources.parse: validation and hourly aggregation of metric-data bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from artq.catalog import MAIN, METRICS
from artq.errors import InvalidResponse
from artq.sources.parse import (
    HourlyValue,
    Window,
    decode_json,
    hourly_values,
    parse_metric_data,
)
from artq.timeutil import HOUR, to_ms

H0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
H0_MS = to_ms(H0)
MIN = 60_000
ART = "Overall Application Performance|Average Response Time (ms)"
CPM = "Overall Application Performance|Calls per Minute"
T1_ART = "Overall Application Performance|ABPServer1|Average Response Time (ms)"
T1_CPM = "Overall Application Performance|ABPServer1|Calls per Minute"
SERVERS = [MAIN, "ABPServer1"]


def point(start_ms: int, count: int, total: int, **extra) -> dict:
    value = round(total / count) if count else 0
    return {"startTimeInMillis": start_ms, "occurrences": 1, "current": value, "min": 0, "max": 0,
            "useRange": True, "count": count, "sum": total, "value": value, "standardDeviation": 0} | extra


def entry(path: str, values: list[dict], frequency: str = "ONE_MIN", name: str = "BTM|x") -> dict:
    return {"metricId": 1, "metricName": name, "metricPath": path, "frequency": frequency, "metricValues": values}


def body(*entries: dict) -> str:
    return json.dumps(list(entries))


def hours(n: int) -> list[datetime]:
    return [H0 + i * HOUR for i in range(n)]


def run(text: str | bytes, window: Window, n_hours: int = 1) -> tuple[list[HourlyValue], list]:
    series = parse_metric_data(text, window, SERVERS)
    return hourly_values(series, SERVERS, hours(n_hours))


def value_of(values: list[HourlyValue], server: str, metric: str, hour: datetime = H0) -> float:
    [v] = [v.value for v in values if (v.server, v.metric, v.hour) == (server, metric, hour)]
    return v


# ---- aggregation ----------------------------------------------------------------------------


def test_art_is_count_weighted_over_one_minute_buckets():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=False)
    values, _ = run(body(entry(ART, [point(H0_MS, 10, 1000), point(H0_MS + MIN, 30, 6000)])), w)
    assert value_of(values, MAIN, "art") == pytest.approx(7000 / 40)


def test_counters_divide_by_minutes_the_buckets_cover():
    w = Window(H0_MS, H0_MS + 2 * 3_600_000, rollup=False)
    text = body(
        entry(CPM, [point(H0_MS, 2, 600), point(H0_MS + 10 * MIN, 2, 900)], frequency="TEN_MIN"),
        entry(T1_CPM, [point(H0_MS, 60, 3000), point(H0_MS + 60 * MIN, 60, 1200)], frequency="SIXTY_MIN"),
    )
    values, _ = run(text, w, n_hours=2)
    assert value_of(values, MAIN, "cpm") == pytest.approx(1500 / 20)
    assert value_of(values, "ABPServer1", "cpm") == pytest.approx(50.0)
    assert value_of(values, "ABPServer1", "cpm", H0 + HOUR) == pytest.approx(20.0)


def test_rollup_point_covers_its_whole_one_hour_window():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    text = body(entry(CPM, [point(H0_MS, 180, 667639)]), entry(ART, [point(H0_MS, 60, 3091968)]))
    values, _ = run(text, w)
    assert value_of(values, MAIN, "cpm") == pytest.approx(667639 / 60)
    assert value_of(values, MAIN, "art") == pytest.approx(3091968 / 60)


def test_no_data_in_any_form_is_reported_missing():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    text = body(
        entry(ART, [], name="METRIC DATA NOT FOUND"),  # known metric, no data
        entry(CPM, []),  # empty list
        entry(T1_ART, [point(H0_MS, 0, 0)]),  # no calls: an average is undefined
        entry(T1_CPM, [point(H0_MS, 1, 0)]),  # zero calls per minute is a value
    )  # every other metric: absent
    values, missing = run(text, w)
    assert values == [HourlyValue("ABPServer1", "cpm", H0, 0.0)]
    assert len(missing) == 2 * len(METRICS) - 1
    assert (MAIN, "art", H0) in missing and ("ABPServer1", "art", H0) in missing


def test_paths_and_tiers_artq_does_not_read_are_ignored_even_if_malformed():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    text = body(
        entry("Overall Application Performance|Stall Count", [{"junk": True}]),
        entry("Overall Application Performance|OtherTier|Calls per Minute", "nonsense"),  # type: ignore[arg-type]
        entry("Overall Application Performance|ABPServer1|Individual Nodes|n1|Calls per Minute", [1]),
        entry(CPM, [point(H0_MS, 1, 120)]),
    )
    values, _ = run(text, w)
    assert values == [HourlyValue(MAIN, "cpm", H0, 2.0)]


def test_buckets_outside_the_window_are_not_counted():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=False)
    text = body(entry(CPM, [point(H0_MS - MIN, 1, 999), point(H0_MS, 1, 60), point(H0_MS + 60 * MIN, 1, 999)]))
    values, _ = run(text, w, n_hours=2)
    assert values == [HourlyValue(MAIN, "cpm", H0, 60.0)]


def test_whole_floats_are_accepted_as_integers():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    values, _ = run(body(entry(CPM, [point(float(H0_MS), 1.0, 120.0)])), w)
    assert values == [HourlyValue(MAIN, "cpm", H0, 2.0)]


def test_body_may_be_bytes_and_pretty_printed():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    text = json.dumps([entry(CPM, [point(H0_MS, 1, 120)])], indent=2, separators=(",", " : ")).encode()
    assert run(text, w)[0] == [HourlyValue(MAIN, "cpm", H0, 2.0)]


# ---- validation: exact messages ---------------------------------------------------------------

W1 = Window(H0_MS, H0_MS + 3_600_000, rollup=False)


def test_negative_count_makes_the_hour_a_gap_with_the_reason():
    rejected: list = []
    series = parse_metric_data(body(entry(ART, [point(H0_MS, -1, 5)]), entry(CPM, [point(H0_MS, 1, 60)])), W1, SERVERS)
    values, missing = hourly_values(series, SERVERS, hours(1), rejected)
    assert (MAIN, "art", H0) in missing and [v.metric for v in values] == ["cpm"]
    assert rejected == [(MAIN, "art", H0, "negative count, sum or value from the controller")]


def test_negative_start_time_is_still_malformed():
    with pytest.raises(InvalidResponse, match="startTimeInMillis must be a non-negative 64-bit integer. Got -60000."):
        parse_metric_data(body(entry(ART, [point(-MIN, 1, 5)])), W1, SERVERS)


@pytest.mark.parametrize(
    ("metric", "value", "why"),
    [
        ("art", 9.2e18, "9.2e+18 is above the plausible maximum 600000 (source.plausible.art.max)"),
        ("art", float("nan"), "nan is not a finite number"),
        ("cpm", -3.0, "-3 is below the plausible minimum 0 (source.plausible.cpm.min)"),
        ("cpm", float("inf"), "inf is not a finite number"),
    ],
)
def test_implausible_values_are_refused_with_the_reason(metric, value, why):
    from artq.config import DEFAULT_PLAUSIBLE
    from artq.sources.parse import check_plausible

    good = HourlyValue(MAIN, metric, H0 + HOUR, 1.0)
    kept, refused = check_plausible([HourlyValue(MAIN, metric, H0, value), good], DEFAULT_PLAUSIBLE)
    assert kept == [good] and refused == [(MAIN, metric, H0, why)]


def test_unknown_frequency_message():
    with pytest.raises(InvalidResponse) as err:
        parse_metric_data(body(entry(CPM, [], frequency="FIVE_MIN")), W1, SERVERS)
    assert str(err.value) == (
        "invalid metric-data for Overall Application Performance|Calls per Minute: "
        "`frequency` must be ONE_MIN, TEN_MIN or SIXTY_MIN. Got 'FIVE_MIN'."
    )


def test_string_sum_message():
    with pytest.raises(InvalidResponse) as err:
        parse_metric_data(body(entry(T1_CPM, [point(H0_MS, 1, 12, sum="12")])), W1, SERVERS)
    assert str(err.value) == (
        "invalid metric-data for Overall Application Performance|ABPServer1|Calls per Minute: "
        "metricValues[0].sum must be an integer. Got '12'."
    )


def test_truncated_json_message():
    text = body(entry(CPM, [point(H0_MS, 1, 120)]))[:-7]
    with pytest.raises(InvalidResponse, match=r"^metric-data response: the body is not complete JSON at character \d+"):
        parse_metric_data(text, W1, SERVERS)


def test_nan_is_not_json():
    with pytest.raises(InvalidResponse) as err:
        decode_json('[{"sum": NaN}]', "metric-data response")
    assert str(err.value) == "metric-data response: the body holds NaN, which is not JSON."


def test_top_level_must_be_an_array():
    with pytest.raises(InvalidResponse) as err:
        parse_metric_data('{"error": "x"}', W1, SERVERS)
    assert str(err.value) == "metric-data response: expected a JSON array of metrics. Got dict {'error': 'x'}."


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ([point(H0_MS + 30_000, 1, 1)], "not aligned to ONE_MIN buckets"),
        ([point(H0_MS + MIN, 1, 1), point(H0_MS, 1, 1)], "is not after the previous bucket"),
        ([point(H0_MS, 1, 1), point(H0_MS, 1, 1)], "is not after the previous bucket"),
        ([point(H0_MS, 1, 1.5)], "sum must be an integer. Got 1.5"),
        ([point(H0_MS, True, 1)], "count must be an integer. Got True"),
        ([point(H0_MS, 1, 2**63)], "sum must be a 64-bit integer"),
        ([point(10**17, 1, 1)], "not a plausible epoch-ms time"),
        ([{k: v for k, v in point(H0_MS, 1, 1).items() if k != "value"}], "metricValues[0] has no `value`"),
        ([[1, 2]], "metricValues[0] must be an object"),
    ],
)
def test_malformed_values_are_rejected(values, what):
    with pytest.raises(InvalidResponse, match="^invalid metric-data for .*Calls per Minute: ") as err:
        parse_metric_data(body(entry(CPM, values)), W1, SERVERS)
    assert what in str(err.value)


def test_average_with_sum_but_no_calls_is_rejected():
    with pytest.raises(InvalidResponse, match="count 0 but sum 50"):
        parse_metric_data(body(entry(ART, [point(H0_MS, 0, 50)])), W1, SERVERS)


def test_not_found_entry_with_values_is_rejected():
    with pytest.raises(InvalidResponse, match="marked METRIC DATA NOT FOUND but carries 1 values"):
        parse_metric_data(body(entry(ART, [point(H0_MS, 1, 1)], name="METRIC DATA NOT FOUND")), W1, SERVERS)


def test_rollup_must_be_one_point_inside_the_window():
    w = Window(H0_MS, H0_MS + 3_600_000, rollup=True)
    with pytest.raises(InvalidResponse, match="one point per metric. Got 2"):
        parse_metric_data(body(entry(CPM, [point(H0_MS, 1, 1), point(H0_MS + MIN, 1, 1)])), w, SERVERS)
    with pytest.raises(InvalidResponse, match=r"not on a minute inside the requested window"):
        parse_metric_data(body(entry(CPM, [point(H0_MS + 3_600_000, 1, 1)])), w, SERVERS)


def test_duplicate_path_in_one_response_is_rejected():
    with pytest.raises(InvalidResponse, match="the path appears twice in one response"):
        parse_metric_data(body(entry(CPM, []), entry(CPM, [])), W1, SERVERS)


def test_entry_without_metric_path_is_rejected():
    with pytest.raises(InvalidResponse) as err:
        parse_metric_data(json.dumps([{"frequency": "ONE_MIN", "metricValues": []}]), W1, SERVERS)
    assert str(err.value) == "metric-data response: entry 0 has no string `metricPath`. Got None."


def test_windows_must_be_whole_hours():
    with pytest.raises(ValueError, match="whole UTC hours"):
        Window(H0_MS + MIN, H0_MS + 3_600_000, rollup=False)
    with pytest.raises(ValueError, match="exactly one hour"):
        Window(H0_MS, H0_MS + 7_200_000, rollup=True)


@pytest.mark.parametrize(
    "text",
    [
        '[{"metricPath": "x", "n": ' + "1" * 5000 + "}]",  # Python refuses >4300-digit ints
        "[" * 100_000 + "]" * 100_000,  # deeper than the decoder's recursion limit
        b'[{"metricPath": "\xff"}]',  # not UTF-8
        "",
    ],
    ids=["huge-int", "deep-nesting", "bad-utf8", "empty"],
)
def test_bodies_python_cannot_decode_raise_invalid_response(text):
    with pytest.raises(InvalidResponse, match="^metric-data response: the body is not complete JSON"):
        parse_metric_data(text, W1, SERVERS)
