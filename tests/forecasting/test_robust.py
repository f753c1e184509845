"""The guardrail, robustness to one extreme hour, and input screening, on generated series."""

import copy

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from artq.config import ForecastSettings
from artq.forecasting import model, train_bundle
from artq.forecasting.backtest import backtest_frame
from artq.forecasting.features import FeatureBuilder
from artq.forecasting.screening import screen_inputs

S = ForecastSettings(training_days=28, min_training_hours=168, seed=0)


def drifting_walk(hours=24 * 21, seed=0):
    """A latency whose baseline wanders (a random walk in log scale) with a weak daily cycle."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-05-04", periods=hours, freq="h", tz="UTC")
    level = np.cumsum(rng.normal(0, 0.04, hours)) - np.linspace(0, 0.3, hours)  # ~25 % down over the span
    daily = 0.05 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24)
    return pd.DataFrame({"art": 200 * np.exp(level + daily + rng.normal(0, 0.01, hours))}, index=idx)


def test_guardrail_picks_an_anchored_forecast_where_a_level_model_loses_to_persistence():
    frame = drifting_walk()
    train, test = frame.iloc[: -24 * 3], frame.iloc[-24 * 3 :]
    # the premise: a tree model of the level (yesterday's artq) is beaten by the last value here
    X = FeatureBuilder("art", []).transform(frame, [3])[3]
    y = frame["art"].shift(-3)
    fit = X.index < train.index[-3]
    level_model = xgb.XGBRegressor(n_estimators=200, max_depth=5, learning_rate=0.06).fit(
        X[fit].drop(columns="art_level").assign(level=np.expm1(X[fit]["art_level"])), y[fit])
    rows = X.index.isin(test.index[:-3])
    level_pred = level_model.predict(X[rows].drop(columns="art_level").assign(level=np.expm1(X[rows]["art_level"])))
    persistence = frame["art"].reindex(X.index[rows]).to_numpy()
    truth = y[rows].to_numpy()
    assert np.mean(np.abs(level_pred - truth)) > np.mean(np.abs(persistence - truth))

    bundle = train_bundle(train, "art", S, exog="none")
    for h in range(1, 7):
        bases = {m.transform.base for m in bundle.members_[h]}
        assert bases <= {"last", "sdelta"}, (h, bases)  # anchored to now, never a stale level
        m = bundle.metrics_["horizons"][str(h)]
        assert m["mae"] <= m["last_value_mae"]
    report = backtest_frame(frame, "art", "none", test_hours=48, refit_every=24, settings=S)
    assert report.metrics["artq"]["mean_mae"] <= 1.0 * report.metrics["last_value"]["mean_mae"]


def daily_latency(hours=24 * 21, seed=1):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-06-01", periods=hours, freq="h", tz="UTC")
    daily = 1 + 0.3 * np.sin(2 * np.pi * (idx.hour.to_numpy() - 8) / 24)
    drift = np.linspace(1.0, 0.8, hours)
    return pd.DataFrame({"art": 120 * daily * drift * np.exp(rng.normal(0, 0.03, hours))}, index=idx)


@pytest.mark.parametrize("hours_before", [3, 30, 24 * 5])
def test_one_extreme_hour_in_history_barely_moves_the_next_forecasts(hours_before):
    frame = daily_latency()
    origin = frame.index[-1]
    spiked = frame.copy()
    spiked.iloc[-1 - hours_before, 0] = 15 * frame["art"].median()
    clean_fc = train_bundle(frame, "art", S, exog="none").predict_all(frame, origin.to_pydatetime())
    spike_fc = train_bundle(spiked, "art", S, exog="none").predict_all(spiked, origin.to_pydatetime())
    for a, b in zip(clean_fc, spike_fc, strict=True):
        assert abs(b.value - a.value) <= 0.05 * a.value, (a.horizon, a.value, b.value)


def with_inputs(hours=24 * 21, seed=2):
    """``driver`` leads the target by two hours; ``flat`` is constant; ``noise`` is unrelated."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-07-06", periods=hours, freq="h", tz="UTC")
    driver = np.zeros(hours)
    for t in range(1, hours):
        driver[t] = 0.8 * driver[t - 1] + rng.normal()
    art = 100 * np.exp(0.15 * np.concatenate([[0, 0], driver[:-2]]) + rng.normal(0, 0.02, hours))
    return pd.DataFrame({"art": art, "driver": 50 + 10 * driver, "flat": 7.0, "noise": rng.normal(50, 10, hours),
                         "blank": np.nan, "driver_copy": 2 * (50 + 10 * driver)}, index=idx)


def test_screening_drops_constant_missing_duplicate_and_noise_inputs():
    frame = with_inputs()
    kept, dropped = screen_inputs(frame, "art", ["driver", "flat", "noise", "blank", "driver_copy"])
    assert kept == ["driver"]
    assert dropped["flat"] == "constant"
    assert dropped["blank"] == "never observed"
    assert dropped["driver_copy"] == "near-duplicate of driver"
    assert dropped["noise"].startswith("no relation to the target's next hours")


def test_the_model_keeps_an_input_that_helps_and_says_which_it_uses():
    frame = with_inputs()
    bundle = train_bundle(frame, "art", S, exog="auto")
    assert bundle.exog == ["driver"]
    assert bundle.metrics_["inputs"]["used"] == ["driver"]
    assert {"flat", "noise", "blank", "driver_copy"} <= set(bundle.metrics_["inputs"]["dropped"])
    assert any(bundle.metrics_["horizons"][str(h)]["inputs"] == ["driver"] for h in range(1, 7))
    assert not any(f.startswith(("noise", "flat")) for f in bundle.feature_names_)


def bursty_writes(hours=24 * 21, seed=3):
    """Disk writes: mostly near zero, with bursts of ~1e8 bytes a few hours a day and rare
    giant ones (30x the usual burst)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-08-03", periods=hours, freq="h", tz="UTC")
    y = rng.exponential(2e3, hours)
    burst = rng.random(hours) < 0.15
    y[burst] = rng.lognormal(np.log(1e8), 0.5, burst.sum())
    y[rng.choice(hours, 3, replace=False)] = 3e9
    return pd.DataFrame({"writes": y}, index=idx)


def test_a_forecast_stays_within_the_training_range_stretched_to_the_current_level(monkeypatch):
    # the guardrail acts on the forecasts made, which the cap below changes: held off, so the two
    # prediction runs differ by the cap alone
    monkeypatch.setattr(model, "GUARD_MIN_HOURS", 10**6)
    frame = bursty_writes()
    bundle = train_bundle(frame.iloc[:-96], "writes", S, exog="none")
    lo, hi = bundle.metrics_["range"]
    assert hi < np.log1p(3e9)  # the 99th percentile: the three giant hours are outside it

    # the guard: a value far above the range comes back to its edge; one inside is untouched;
    # where the current level is itself above the range, the edge follows it
    inside = np.expm1(hi - 0.1)
    got = bundle.within_range(np.array([1e12, inside]), np.array([0.0, 0.0]))
    assert got[0] == pytest.approx(np.expm1(hi + np.log(1.5))) and got[1] == pytest.approx(inside)
    now_high = bundle.within_range(np.array([1e12]), np.array([hi + 2.0]))
    assert now_high[0] == pytest.approx(np.expm1(hi + 2.0 + np.log(1.5)))

    # every prediction path goes through it: with a (made-up) narrow training range, the
    # forecasts that lay above its edge are brought down to it (the range is in model units)
    origins = frame.index[-96:-6]
    u = bundle.unit_
    level = np.log1p(frame["writes"].reindex(origins).to_numpy() * u)
    free = bundle.predict_frame(frame, origins)
    narrow = np.quantile(np.log1p(free[1]["value"] * u), 0.5)
    bundle.metrics_["range"] = [0.0, narrow]
    cap = np.expm1(np.fmax(narrow, level) + np.log(1.5)) / u
    capped = bundle.predict_frame(frame, origins)
    assert (free[1]["value"].to_numpy() > cap * 1.001).any()  # the premise: some forecasts lay above
    for h in range(1, 7):
        v = capped[h]["value"].to_numpy()
        assert (v <= cap * (1 + 1e-9)).all(), h
        assert np.allclose(v, np.minimum(free[h]["value"].to_numpy(), cap)), h


def test_intervals_on_a_bursty_series_stay_finite_within_the_range_and_never_below_zero():
    frame = bursty_writes()
    bundle = train_bundle(frame.iloc[:-96], "writes", S, exog="none")
    origins = frame.index[-96:-6]
    u = bundle.unit_
    level = np.log1p(frame["writes"].reindex(origins).to_numpy() * u)
    cap = np.expm1(np.fmax(bundle.metrics_["range"][1], level) + np.log(1.5)) / u
    got = bundle.predict_frame(frame, origins)
    saved = bundle.metrics_.pop("range")
    try:  # the premise: without the range, log-scale residuals times a burst's spread run away
        free = bundle.predict_frame(frame, origins)
    finally:
        bundle.metrics_["range"] = saved
    assert any((~np.isfinite(free[h]["upper"]) | (free[h]["upper"] > cap)).any() for h in free)
    for h, df in got.items():
        lower, value, upper = (df[c].to_numpy() for c in ("lower", "value", "upper"))
        assert np.isfinite(lower).all() and np.isfinite(upper).all(), h
        assert (lower >= 0).all() and (value >= 0).all(), h  # the series was never negative
        assert (lower <= value + 1e-6).all() and (value <= upper * (1 + 1e-9)).all(), h
        assert (upper <= cap * (1 + 1e-9)).all(), h


def test_the_forecasts_do_not_depend_on_the_units_of_the_target():
    """Seconds or milliseconds, a CPU fraction or a percentage: the same forecasts, in those units.
    (A CPU share of 0.1 used to sit in the linear part of log1p, where the model behaved otherwise.)"""
    seconds = daily_latency()
    seconds["art"] = seconds["art"] / 1000  # ~0.12 s
    millis = seconds.assign(art=seconds["art"] * 1000)
    train = slice(None, -48)
    a = train_bundle(seconds.iloc[train], "art", S, exog="none")
    b = train_bundle(millis.iloc[train], "art", S, exog="none")
    assert b.unit_ == pytest.approx(a.unit_ / 1000)
    origins = seconds.index[-48:-6]
    fa, fb = a.predict_frame(seconds, origins), b.predict_frame(millis, origins)
    for h in range(1, 7):
        for col in ("value", "lower", "upper"):
            assert np.allclose(fa[h][col] * 1000, fb[h][col], rtol=1e-6), (h, col)
    assert a.metrics_["mean_mae"] * 1000 == pytest.approx(b.metrics_["mean_mae"], rel=1e-6)


def test_a_chosen_naive_forecast_is_overruled_on_12_hours_of_evidence_a_model_on_4(bundle, small_frame):
    from artq.forecasting.model import GUARD_MIN_HOURS, GUARD_NAIVE_MIN_HOURS
    from artq.forecasting.transforms import TargetTransform
    from artq.forecasting.tuning import DEFAULT_PARAMS, Member

    h = 2
    as_model, as_naive = copy.deepcopy(bundle), copy.deepcopy(bundle)
    as_model.members_[h] = [Member(TargetTransform("log", "last"), dict(DEFAULT_PARAMS), 30)]
    as_naive.members_[h] = [Member(TargetTransform("log", "last"), {}, 0)]
    assert (as_model.guard_min_hours(h), as_naive.guard_min_hours(h)) == (GUARD_MIN_HOURS, GUARD_NAIVE_MIN_HOURS)
    row = bundle.builder.transform_at(small_frame, pd.DatetimeIndex([small_frame.index[-10]]), [h])[h].to_numpy()[0]
    value = float(bundle.naive_forecasts(row.reshape(1, -1), h)[0, 0]) * 1.2
    rng = np.random.default_rng(4)
    for hours in (GUARD_MIN_HOURS, GUARD_NAIVE_MIN_HOURS - 1, GUARD_NAIVE_MIN_HOURS):
        actual = 100 + rng.normal(0, 3, hours)
        naives = np.column_stack([actual + rng.normal(0, 1, hours), actual + 30, actual - 30])
        forecast = actual + 20  # every recent forecast 20 off; the last value about 1 off
        overruled = [b.guarded(value, row, h, actual, forecast, naives) != value for b in (as_model, as_naive)]
        assert overruled == [True, hours >= GUARD_NAIVE_MIN_HOURS], hours
