"""The guardrail between retrains: a naive forecast that clearly beat the forecasts made lately
takes half of the next one, the same in the live cycle (stored forecasts, naive forecasts read
from the stored observations) as in the backtest (``predict_frame(past=...)``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from artq.forecasting.model import GUARD_MIN_HOURS, _GuardReplay, naive_switch
from artq.horizons import HORIZONS
from artq.pipeline import Runtime, champions, train_step
from artq.pipeline.cycle import run_in_process
from artq.pipeline.feature_rows import naive_values, target_history
from artq.storage.db import Database
from artq.storage.models import Forecast
from artq.timeutil import HOUR
from tests.conftest import make_settings
from tests.dashboard.conftest import T0, seed_actuals
from tests.pipeline.stored import stored_cycle


def test_a_naive_forecast_takes_over_only_when_it_clearly_and_mostly_won():
    rng = np.random.default_rng(0)
    actual = 100 + rng.normal(0, 5, 40)
    naives = np.column_stack([actual + rng.normal(0, 2, 40), actual + 30, actual - 30])
    assert naive_switch(actual, actual + 20, naives) == 0  # 20 off every hour: the last value won
    assert naive_switch(actual, actual + rng.normal(0, 2.2, 40), naives) is None  # about as good: no switch
    big_misses = actual + np.where(np.arange(40) < 4, 200.0, 0.5)  # a worse mean from four hours only
    assert naive_switch(actual, big_misses, naives) is None
    few = slice(0, GUARD_MIN_HOURS - 1)
    assert naive_switch(actual[few], actual[few] + 20, naives[few]) is None  # too few hours to judge
    first = slice(0, GUARD_MIN_HOURS)  # a cold start: the first hours after a deployment are enough
    assert naive_switch(actual[first], actual[first] + 20, naives[first]) == 0
    assert naive_switch(actual, actual + 20, np.column_stack([naives[:, :1] * np.nan, naives[:, 1:]])) is None


def test_the_replay_on_running_sums_decides_as_the_guard_does_window_by_window():
    rng = np.random.default_rng(3)
    n = 200
    actual = 100 + np.cumsum(rng.normal(0, 3, n))
    forecast = actual + rng.normal(0, 4, n) + np.where(np.arange(n) % 50 < 20, 12.0, 0.0)  # bad stretches
    naives = np.column_stack([actual + rng.normal(0, 3, n), actual + rng.normal(0, 6, n), actual + rng.normal(0, 9, n)])
    naives[rng.random(n) < 0.1, 2] = np.nan  # last week's hour missing at times
    actual[rng.random(n) < 0.05] = np.nan
    replay = _GuardReplay(actual, forecast, naives)
    decisions = []
    for hi in range(1, n + 1):
        lo = max(0, hi - 48)
        expected = naive_switch(actual[lo:hi], forecast[lo:hi], naives[lo:hi])
        assert replay.winner(lo, hi) == expected, hi
        decisions.append(expected)
        if hi < n and hi % 7 == 0:  # the guard changed a forecast: the sums after it follow
            new = forecast[hi] - 10.0
            replay.changed(hi, forecast[hi], new)
            forecast[hi] = new
    assert {None, 0} <= set(decisions)  # both outcomes occur


def test_the_naive_forecasts_of_past_hours_come_from_the_stored_observations(any_db_url, tmp_path):
    db = Database(any_db_url)
    try:
        seed_actuals(db, "ABP", T0 - 300 * HOUR, T0, lambda t: float((T0 - t) // HOUR))  # value = hours before T0
        seed_actuals(db, "BBP", T0 - 10 * HOUR, T0 - 3 * HOUR, 7.0)  # BBP: nothing in the last 2 hours
        rt = Runtime(make_settings(tmp_path, database_url=any_db_url, apps=["ABP", "BBP"]))
        try:
            got = target_history(rt, ["ABP", "BBP", "CBP"], T0, 230)
        finally:
            rt.close()
    finally:
        db.dispose()
    assert np.array_equal(got["ABP"], np.arange(231, dtype=float))
    assert np.isnan(got["CBP"]).all() and np.isnan(got["BBP"][:3]).all() and got["BBP"][3] == 7.0
    # the hour 5 hours before T0, forecast 2 hours ahead: origin 7 hours before; a day and a week before
    assert naive_values(got["ABP"], 5, 2) == (7.0, 29.0, 173.0)
    # the last value known at the origin, as the features' anchor: BBP's origin 1 hour before T0 has
    # none; the latest before it, 3 hours before T0, stands in
    assert naive_values(got["BBP"], 0, 1)[0] == 7.0


def test_the_live_cycle_guards_its_forecast_as_the_backtest_does(trained_sqlite):
    settings, t0, _ = trained_sqlite
    rt = Runtime(settings)
    try:
        old = train_step(rt, "ABP", until=t0 - 24 * HOUR)  # its window ends where the live cycles start
        with rt.db.session() as s:
            champions.set_champion(s, "ABP", old["version"], "test: a model a day old")
        for k in range(24, 0, -1):
            assert run_in_process(rt, ["ABP"], t0 - k * HOUR, "test")["ABP"]["status"] == "succeeded"
        with rt.db.session() as s:  # the day's forecasts were 60 % too high: any naive forecast beat them
            s.execute(update(Forecast).where(Forecast.application == "ABP", Forecast.origin < t0)
                      .values(value=Forecast.value * 1.6))
        assert run_in_process(rt, ["ABP"], t0, "test")["ABP"]["status"] == "succeeded"
        bundle, _ = rt.champion("ABP")
        live, earlier, frame = stored_cycle(rt, "ABP", t0)
    finally:
        rt.close()
    backtest_way = bundle.predict_frame(frame, [pd.Timestamp(t0)], past=earlier)
    row = {h: bundle.builder.arrays(frame, [frame.index.get_loc(pd.Timestamp(t0))], [h], check=False)[h] for h in HORIZONS}
    model = {h: float(bundle.values(row[h], h)[0]) for h in HORIZONS}
    guarded = 0
    for h in HORIZONS:
        f, want = live[h], backtest_way[h].iloc[0]
        assert f.value == pytest.approx(want["value"], rel=1e-9), h
        assert (f.lower, f.upper) == (pytest.approx(want["lower"], rel=1e-9), pytest.approx(want["upper"], rel=1e-9)), h
        naive = bundle.naive_forecasts(row[h], h)[0]
        if f.value != pytest.approx(model[h], rel=1e-9):  # guarded: half the model's, half a naive one's
            assert np.isclose(2 * f.value, model[h] + naive, rtol=1e-9).any(), h
            guarded += 1
    assert guarded >= 4, "forecasts 60 % too high for a day changed (almost) no forecast"


def test_the_vectorised_pre_check_never_misses_a_window_where_the_guard_acts():
    rng = np.random.default_rng(3)
    n = 400
    actual = 100 + np.cumsum(rng.normal(0, 3, n))
    forecast = actual + rng.normal(0, 1, n) * np.where(np.arange(n) % 100 < 50, 2.0, 12.0)  # good, then bad
    naives = np.column_stack([actual + rng.normal(0, 4, n), actual + rng.normal(0, 8, n), actual + 30])
    naives[rng.random((n, 3)) < 0.1] = np.nan
    actual[rng.random(n) < 0.05] = np.nan
    a = np.maximum(0, np.arange(n) - 48)
    b = np.arange(n)
    may = _GuardReplay(actual, forecast, naives).may_act(a, b)
    exact = np.array([naive_switch(actual[i:j], forecast[i:j], naives[i:j]) is not None for i, j in zip(a, b, strict=True)])
    assert exact.any() and not exact.all()  # the premise: both kinds of window occur
    assert not (exact & ~may).any()
    assert (may == exact).mean() > 0.99  # and it rarely says maybe in vain
