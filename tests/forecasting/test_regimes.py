"""Level regimes: where the current one starts, and what model selection does after a shift."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings
from artq.forecasting import train_bundle
from artq.forecasting.drift import YOUNG_RETRAIN_HOURS, check_drift
from artq.forecasting.regimes import YOUNG_HOURS, regime_start

S = ForecastSettings(training_days=28, min_training_hours=168, seed=0)


def log_noise(hours, seed, sd=0.03):
    return np.random.default_rng(seed).normal(0, sd, hours)


@pytest.mark.parametrize("factor", [3.0, 1 / 3, 2.2])
@pytest.mark.parametrize("after", [9, 30, 200])
def test_a_sustained_level_shift_is_found_at_the_hour_it_happened(factor, after):
    hours = 24 * 20
    z = np.log(100.0) + log_noise(hours, seed=int(after))
    z[hours - after :] += np.log(factor)
    assert regime_start(z) == hours - after


def test_a_shift_is_found_through_missing_hours_and_a_spike_in_the_new_level():
    hours = 24 * 20
    z = np.log(100.0) + log_noise(hours, seed=4)
    z[-60:] += np.log(0.3)
    z[[-50, -10, -200]] = np.nan
    z[-30] += np.log(15)
    assert regime_start(z) == hours - 60


def daily_cycle(hours, night=0.25, seed=5):
    hour = np.arange(hours) % 24
    day = (hour >= 8) & (hour < 20)
    return np.log(np.where(day, 100.0, 100.0 * night)) + log_noise(hours, seed)


def test_a_daily_cycle_is_not_a_shift_at_any_hour_of_the_day():
    z = daily_cycle(24 * 30)
    assert [regime_start(z[:end]) for end in range(len(z) - 48, len(z) + 1)] == [0] * 49


@pytest.mark.parametrize("case", ["burst at the end", "burst that ended", "one extreme hour", "noise"])
def test_bursts_one_extreme_hour_and_noise_are_not_shifts(case):
    hours = 24 * 20
    z = np.log(100.0) + log_noise(hours, seed=6, sd=0.1)
    if case == "burst at the end":
        z[-4:] += np.log(3)  # shorter than the hours a new level needs
    elif case == "burst that ended":
        z[-40:-28] += np.log(4)
    elif case == "one extreme hour":
        z[-20] += np.log(15)
    assert regime_start(z) == 0


def saturated(days_after, days=28, seed=7):
    """CPU with a strong daily cycle around 30 %, pegged at ~99 % for the last ``days_after`` days."""
    hours = 24 * days
    idx = pd.date_range("2026-03-02", periods=hours, freq="h", tz="UTC")
    rng = np.random.default_rng(seed)
    cycle = 30 * (1 + 0.4 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24)) * np.exp(rng.normal(0, 0.03, hours))
    pegged = 99 + rng.normal(0, 0.1, hours)
    start = hours - 24 * days_after
    return pd.DataFrame({"cpu": np.where(np.arange(hours) >= start, pegged, cycle)}, index=idx), idx[min(start, hours - 1)]


def test_after_a_shift_the_forecast_is_a_naive_one_judged_on_the_new_level_until_it_is_a_week_old():
    frame, start = saturated(days_after=3)
    bundle = train_bundle(frame, "cpu", S, exog="none")
    assert bundle.metrics_["regime"] == {"start": start.isoformat(), "hours": 72, "models_wait": True}
    last = float(frame["cpu"].iloc[-1])
    for fc in bundle.predict_all(frame, frame.index[-1].to_pydatetime()):
        assert all(m.n_rounds == 0 for m in bundle.members_[fc.horizon])  # no trees yet
        # judged on the pegged hours, the last value wins; judged on the weeks before, the daily
        # shape (+-40 %) would have, and been copied onto a flat 99 %
        assert fc.value == pytest.approx(last, rel=0.005), fc.horizon


def test_a_week_into_the_new_level_models_compete_again_judged_on_its_hours_only():
    frame, start = saturated(days_after=10)
    bundle = train_bundle(frame, "cpu", S, exog="none")
    assert bundle.metrics_["regime"]["hours"] == 240 >= YOUNG_HOURS
    assert bundle.metrics_["regime"]["models_wait"] is False
    last = float(frame["cpu"].iloc[-1])
    for fc in bundle.predict_all(frame, frame.index[-1].to_pydatetime()):
        assert fc.value == pytest.approx(last, rel=0.01), fc.horizon
    steady, _ = saturated(days_after=0)
    assert train_bundle(steady, "cpu", S, exog="none").metrics_["regime"] is None


def test_a_model_trained_on_a_young_level_asks_to_be_retrained_after_a_day():
    frame, _ = saturated(days_after=3)
    bundle = train_bundle(frame, "cpu", S, exog="none")
    end = frame.index[-1].to_pydatetime()

    def young(hours_later):
        report = check_drift(bundle, frame, now=end + timedelta(hours=hours_later), errors={})
        return [r for r in report.reasons if r.startswith("young regime")]

    assert young(YOUNG_RETRAIN_HOURS - 1) == []
    assert len(young(YOUNG_RETRAIN_HOURS + 1)) == 1
    steady = train_bundle(saturated(days_after=0)[0], "cpu", S, exog="none")
    assert [r for r in check_drift(steady, frame, now=end + timedelta(hours=30), errors={}).reasons
            if r.startswith("young regime")] == []
