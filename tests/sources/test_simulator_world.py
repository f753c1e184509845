"""The simulated world: determinism, aggregation, cycles, queueing, incidents, gaps, no future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from artq.catalog import MAIN
from artq.errors import ConfigError
from artq.sources.simulator import Faults, SimApp, SimulatorConfig, World, fleet_apps
from artq.sources.simulator.generate import response_time
from artq.sources.simulator.tables import (
    ART_SUM,
    CALLS,
    PRESENT,
    minute_table,
    reduce,
    values,
)

NOW = datetime(2026, 11, 26, 7, 30, tzinfo=UTC)
WEEK_START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
HOUR = 3_600_000


def make_world(seed: int = 42, now: datetime = NOW, **app: object) -> World:
    return World(SimulatorConfig(seed=seed, applications=[SimApp("ABP", **app)], now=lambda: now))


def hour_index(t: datetime) -> int:
    return int(t.timestamp() * 1000) // HOUR


def test_same_seed_gives_identical_hourly_series_and_other_seed_differs() -> None:
    a = make_world(42).hourly("ABP", MAIN, "art", WEEK_START, WEEK_START + timedelta(days=2))
    b = make_world(42).hourly("ABP", MAIN, "art", WEEK_START, WEEK_START + timedelta(days=2))
    c = make_world(43).hourly("ABP", MAIN, "art", WEEK_START, WEEK_START + timedelta(days=2))
    pd.testing.assert_series_equal(a, b)
    assert not np.allclose(a.to_numpy(), c.to_numpy(), equal_nan=True)


def test_minutes_do_not_depend_on_the_window_generated() -> None:
    h = hour_index(WEEK_START) + 30
    whole = make_world().raw_minutes("ABP", h - 7, h + 20)
    part = make_world().raw_minutes("ABP", h, h + 3)
    np.testing.assert_array_equal(whole[:, :, 7 * 60 : 10 * 60], part)


def test_hourly_truth_is_count_weighted_for_art_and_per_reported_minute_for_counters() -> None:
    w = make_world()
    h = hour_index(WEEK_START) + 12
    raw = w.raw_minutes("ABP", h, h + 1)
    start = WEEK_START + timedelta(hours=12)
    ok = raw[PRESENT, 0].astype(bool)
    art = w.hourly("ABP", MAIN, "art", start, start + timedelta(hours=1)).iloc[0]
    cpm = w.hourly("ABP", MAIN, "cpm", start, start + timedelta(hours=1)).iloc[0]
    assert art == pytest.approx(raw[ART_SUM, 0][ok].sum() / raw[CALLS, 0][ok].sum())
    assert cpm == pytest.approx(raw[CALLS, 0][ok].sum() / ok.sum())


def test_ten_minute_buckets_carry_sum_count_min_max_and_last_current() -> None:
    w = make_world()
    h = hour_index(WEEK_START) + 9
    raw = w.raw_minutes("ABP", h, h + 1)
    nodes = w.model("ABP").nodes
    minutes = minute_table(raw, "art", nodes)
    ten = reduce(minutes, 10)
    s = 2  # a tier
    ok = minutes.n[s, :10] > 0
    assert ten.sum[s, 0] == minutes.sum[s, :10][ok].sum()
    assert ten.count[s, 0] == minutes.count[s, :10][ok].sum()
    assert ten.min[s, 0] == minutes.min[s, :10][ok].min()
    assert ten.max[s, 0] == minutes.max[s, :10][ok].max()
    assert ten.current[s, 0] == minutes.current[s, :10][ok][-1]
    assert values(ten, "art")[s, 0] == int(np.floor(ten.sum[s, 0] / ten.count[s, 0] + 0.5))


def test_main_server_calls_are_the_sum_of_its_tiers_and_art_includes_overhead() -> None:
    w = make_world(minute_gap_rate=0.0, outages_per_week=0.0)
    h = hour_index(WEEK_START) + 40
    raw = w.raw_minutes("ABP", h, h + 1)
    np.testing.assert_array_equal(raw[CALLS, 0], raw[CALLS, 1:].sum(0))
    assert (raw[ART_SUM, 0] > raw[ART_SUM, 1:].sum(0)).all()  # the gateway adds its own time


def test_response_time_bends_sharply_as_utilisation_nears_capacity() -> None:
    base = 100.0
    low_step = response_time(base, 0.5) - response_time(base, 0.4)
    high_step = response_time(base, 0.9) - response_time(base, 0.8)
    assert high_step > 4 * low_step
    assert response_time(base, 1.5) == pytest.approx(base * 15)  # capped, never negative or infinite


def test_tier_art_grows_faster_than_linearly_with_its_load() -> None:
    w = make_world(incidents_per_week=0.0)
    start, end = WEEK_START, WEEK_START + timedelta(days=14)
    tier = "ABPServer2"
    art = w.hourly("ABP", tier, "art", start, end).to_numpy()
    cpm = w.hourly("ABP", tier, "cpm", start, end).to_numpy()
    ok = ~np.isnan(art)
    art, cpm = art[ok], cpm[ok]
    low = cpm <= np.quantile(cpm, 0.5)
    slope, icept = np.polyfit(cpm[low], art[low], 1)  # the quiet half's linear trend ...
    top = cpm >= np.quantile(cpm, 0.95)
    assert art[top].mean() > 1.3 * (slope * cpm[top] + icept).mean()  # ... badly underestimates peaks


def test_daily_cycle_and_quieter_weekends_in_calls() -> None:
    w = make_world(surges_per_day=0.0)
    cpm = w.hourly("ABP", MAIN, "cpm", WEEK_START, WEEK_START + timedelta(days=14))
    by_hour = cpm.groupby(cpm.index.hour).mean()
    assert by_hour.max() > 1.5 * by_hour.min()
    weekend = cpm[cpm.index.day_of_week >= 5].mean()
    weekday = cpm[cpm.index.day_of_week < 5].mean()
    assert weekend < 0.9 * weekday


def test_incident_on_a_tier_raises_its_art_and_propagates_to_main_with_errors() -> None:
    start, end = WEEK_START, WEEK_START + timedelta(days=21)
    w = make_world()
    quiet = make_world(incidents_per_week=0.0)  # same world, incidents switched off
    incidents = w.incidents("ABP", start, end)
    assert incidents, "seed 42 must hold an incident in these three weeks"
    inc = max(incidents, key=lambda i: i.end_min - i.start_min)
    a = inc.start.replace(minute=0) + timedelta(hours=1)
    b = a + timedelta(hours=max((inc.end_min - inc.start_min) // 60 - 1, 1))
    tier_hit = w.hourly("ABP", inc.tier, "art", a, b).mean() / quiet.hourly("ABP", inc.tier, "art", a, b).mean()
    main_hit = w.hourly("ABP", MAIN, "art", a, b).mean() / quiet.hourly("ABP", MAIN, "art", a, b).mean()
    errors = w.hourly("ABP", MAIN, "epm", a, b).sum() / quiet.hourly("ABP", MAIN, "epm", a, b).sum()
    assert tier_hit > 1.5
    assert main_hit > 1.05
    assert errors > 1.5
    later = inc.end + timedelta(days=1, hours=2)  # well after it, the two worlds agree again
    same = quiet.hourly("ABP", MAIN, "art", later, later + timedelta(hours=3))
    if not w.incidents("ABP", later, later + timedelta(hours=3)):
        pd.testing.assert_series_equal(w.hourly("ABP", MAIN, "art", later, later + timedelta(hours=3)), same)


def test_reporting_gaps_leave_whole_hours_missing_and_rare_minutes() -> None:
    w = make_world(outages_per_week=3.0)
    end = WEEK_START + timedelta(days=21)
    art = w.hourly("ABP", MAIN, "art", WEEK_START, end)
    tier_gaps = sum(
        w.hourly("ABP", t, "cpm", WEEK_START, end).isna().sum()
        for t in w.apps["ABP"].tiers
    )
    assert art.isna().sum() + tier_gaps >= 1
    h = hour_index(WEEK_START)
    present = w.raw_minutes("ABP", h, h + 48)[PRESENT]
    assert 0.9 < present.mean() < 1.0


def test_no_data_after_now_and_the_current_hour_is_not_complete() -> None:
    w = make_world(now=datetime(2026, 11, 3, 10, 20, tzinfo=UTC))
    s = w.hourly("ABP", MAIN, "cpm", datetime(2026, 11, 3, 8, tzinfo=UTC), datetime(2026, 11, 3, 13, tzinfo=UTC))
    assert s.notna().tolist() == [True, True, False, False, False]


def test_unknown_server_or_metric_is_a_config_error_naming_the_choices() -> None:
    w = make_world()
    with pytest.raises(ConfigError, match="unknown server 'nope'"):
        w.hourly("ABP", "nope", "art", WEEK_START, WEEK_START + timedelta(hours=1))
    with pytest.raises(ConfigError, match="unknown metric key 'p95'"):
        w.hourly("ABP", MAIN, "p95", WEEK_START, WEEK_START + timedelta(hours=1))


def test_fleet_apps_names_seven_tier_apps() -> None:
    apps = fleet_apps(3)
    assert [a.name for a in apps] == ["APP0001", "APP0002", "APP0003"]
    assert all(len(a.tiers) == 7 for a in apps)


def test_cache_stays_bounded() -> None:
    w = World(SimulatorConfig(applications=[SimApp("ABP")], now=lambda: NOW, cache_blocks=10))
    w.raw_minutes("ABP", hour_index(WEEK_START), hour_index(WEEK_START) + 30)
    assert len(w._cache) == 10


def test_faults_parse_reads_every_kind_and_rejects_unknown_keys() -> None:
    f = Faults.parse("fail_next=2;error_status=504;latency_s=0.1;max_in_flight=10;"
                     "missing_paths=Overall Application Performance|Calls per Minute;"
                     "missing_hours=2026-11-20T03:00Z/2026-11-20T06:00Z")
    assert (f.fail_next, f.error_status, f.latency_s, f.max_in_flight) == (2, 504, 0.1, 10)
    assert f.missing_paths == {"Overall Application Performance|Calls per Minute"}
    assert f.hour_missing(int(datetime(2026, 11, 20, 5, tzinfo=UTC).timestamp() * 1000))
    with pytest.raises(ConfigError, match="key one of"):
        Faults.parse("explode=1")


def test_releases_go_out_tue_to_thu_in_office_hours_and_step_capacity_only_then() -> None:
    w = make_world(deployments_per_week=3.0)
    deps = w.deployments("ABP", WEEK_START, WEEK_START + timedelta(days=21))
    assert deps and all(d.at.weekday() in (1, 2, 3) and 8 <= d.at.hour < 17 for d in deps)
    model = w.model("ABP")
    m0 = int(WEEK_START.timestamp()) // 60
    m = np.arange(m0, m0 + 21 * 1440)
    cap, _ = model._release_levels(int(m[0]), int(m[-1]) + 1, m)
    j = w.apps["ABP"].tiers.index(deps[0].tier)
    steps = set((m[1:][np.diff(cap[j]) != 0]).tolist())
    assert steps <= {d.minute for d in deps if d.tier == deps[0].tier}
    assert cap[j][m == deps[0].minute][0] == pytest.approx(deps[0].capacity_level)


def test_release_levels_do_not_depend_on_how_far_back_the_window_starts() -> None:
    model = make_world(deployments_per_week=0.1).model("ABP")  # rare releases: old ones matter
    m0 = int(WEEK_START.timestamp()) // 60
    m = np.arange(m0, m0 + 7 * 1440)
    near, _ = model._release_levels(int(m[0]), int(m[-1]) + 1, m)
    far_m = np.arange(m0 - 20 * 7 * 1440, m0 + 7 * 1440)
    far, _ = model._release_levels(int(far_m[0]), int(far_m[-1]) + 1, far_m)
    np.testing.assert_array_equal(near, far[:, -len(m):])
