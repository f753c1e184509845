import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings
from artq.forecasting import train_bundle
from artq.forecasting.intervals import ConformalInterval, empirical_coverage


def test_conformal_bounds_are_residual_quantiles():
    res = np.arange(-50, 50, dtype=float)  # 100 residuals, uniform
    ci = ConformalInterval(0.8).fit(res)
    lo, hi = ci.bounds(np.array([10.0]))
    # finite-sample corrected 10th / 90th percentiles, never narrower than the plain ones
    assert lo[0] <= 10 + np.quantile(res, 0.1) and hi[0] >= 10 + np.quantile(res, 0.9)
    assert hi[0] - lo[0] <= 10 + np.quantile(res, 0.92) - (10 + np.quantile(res, 0.08))
    assert empirical_coverage(res, np.full(100, ci.lower_), np.full(100, ci.upper_)) >= 0.8


def test_conformal_validates_inputs():
    with pytest.raises(ValueError) as exc:
        ConformalInterval(1.2)
    assert str(exc.value) == "`coverage` must be in (0, 1). Got 1.2."
    with pytest.raises(ValueError) as exc:
        ConformalInterval(0.8).fit(np.array([1.0, np.nan]))
    assert str(exc.value) == "`residuals` must hold at least 10 finite values. Got 1."


@pytest.fixture(scope="module")
def walk_bundle():
    rng = np.random.default_rng(42)
    idx = pd.date_range("2026-03-02", periods=24 * 16, freq="h", tz="UTC")
    daily = 20 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24)
    art = 300 + np.cumsum(rng.standard_normal(len(idx)) * 6) + daily
    frame = pd.DataFrame({"art": art}, index=idx)
    s = ForecastSettings(training_days=16, min_training_hours=168, seed=0)
    return train_bundle(frame.iloc[:-48], "art", s), frame


def test_intervals_widen_with_horizon_on_noisy_data(walk_bundle):
    bundle, frame = walk_bundle
    origins = frame.index[-48:-6]
    preds = bundle.predict_frame(frame, origins)
    widths = [float((preds[h]["upper"] - preds[h]["lower"]).median()) for h in range(1, 7)]
    assert widths[5] > 1.5 * widths[0]
    assert widths[0] < widths[2] < widths[5]


def test_intervals_cover_roughly_nominal_out_of_sample(walk_bundle):
    bundle, frame = walk_bundle
    origins = frame.index[-48:-6]
    preds = bundle.predict_frame(frame, origins)
    y = frame["art"]
    covered = [empirical_coverage(y.reindex(origins + pd.Timedelta(hours=h)).to_numpy(),
                                  preds[h]["lower"].to_numpy(), preds[h]["upper"].to_numpy()) for h in range(1, 7)]
    assert 0.55 <= float(np.mean(covered)) <= 1.0


def test_interval_bounds_ignore_values_after_each_origin(walk_bundle):
    bundle, frame = walk_bundle
    origins = frame.index[-40:-6]
    before = bundle.predict_frame(frame, origins)
    cut = origins[20]
    changed = frame.copy()
    changed.loc[changed.index > cut, "art"] *= 3
    after = bundle.predict_frame(changed, origins)
    for h in range(1, 7):
        pd.testing.assert_frame_equal(before[h].loc[:cut], after[h].loc[:cut])
        assert not before[h].loc[cut:].iloc[1:].equals(after[h].loc[cut:].iloc[1:])


def test_intervals_widen_when_recent_errors_grow(walk_bundle):
    bundle, frame = walk_bundle
    origin = frame.index[-7]
    calm = bundle.predict_frame(frame, [origin])[1]
    noisy = frame.copy()
    rng = np.random.default_rng(1)
    recent = noisy.index[-48:-6]
    noisy.loc[recent, "art"] += rng.normal(0, 60, len(recent))  # volatility jumps after training
    wild = bundle.predict_frame(noisy, [origin])[1]
    assert (wild["upper"] - wild["lower"]).iloc[0] > 1.5 * (calm["upper"] - calm["lower"]).iloc[0]


def test_locally_weighted_interval_follows_the_current_spread_and_round_trips():
    rng = np.random.default_rng(3)
    spread = rng.uniform(0.05, 0.5, 400)
    res = rng.normal(0, 1, 400) * spread  # errors proportional to the local volatility
    ci = ConformalInterval(0.8).fit(res, spread)
    calm, wild = ci.bounds_with(0.0, np.empty(0), 0.1), ci.bounds_with(0.0, np.empty(0), 0.5)
    assert wild[1] - wild[0] == pytest.approx(5 * (calm[1] - calm[0]))
    z = res / spread
    assert ci.lower_ == pytest.approx(np.quantile(z, 0.1), abs=0.15) and ci.upper_ == pytest.approx(np.quantile(z, 0.9), abs=0.15)
    tiny = ci.bounds_with(0.0, np.empty(0), 0.0)  # a flat window: the floor keeps the interval open
    assert tiny[1] - tiny[0] > 0
    again = ConformalInterval.from_dict(ci.as_dict())
    assert again.bounds_with(0.0, np.array([0.3, -0.2]), 0.2) == ci.bounds_with(0.0, np.array([0.3, -0.2]), 0.2)


def test_right_after_a_refit_the_interval_learns_from_what_earlier_models_forecast(walk_bundle):
    """A model trained up to the origin has no forecasts of its own yet; the stored forecasts of
    the hours before it (``past``) recalibrate its interval at once."""
    bundle, frame = walk_bundle
    end = pd.Timestamp(bundle.training_window_["end"])
    origin = [end]
    alone = bundle.predict_frame(frame, origin)
    before = frame.index[(frame.index < end) & (frame.index >= end - pd.Timedelta(hours=60))]
    y = frame["art"]
    wild = {h: pd.Series(y.reindex(before + pd.Timedelta(hours=h)).to_numpy() + 90.0, index=before) for h in range(1, 7)}
    wide = bundle.predict_frame(frame, origin, past=wild)
    for h in range(1, 7):
        # the point forecast: the model's, averaged with a naive forecast that beat 90 ms errors
        # every hour (the guardrail, tests/forecasting/test_guard.py)
        X = bundle.builder.arrays(frame, [frame.index.get_loc(end)], [h], check=False)[h]
        naive = bundle.naive_forecasts(X, h)[0]
        assert np.isclose(2 * wide[h]["value"].iloc[0], alone[h]["value"].iloc[0] + naive).any(), h
        width = lambda p: float(p[h]["upper"].iloc[0] - p[h]["lower"].iloc[0])
        assert width(wide) > 1.5 * width(alone), h  # 90 ms errors, every hour of the last two days


def test_until_a_day_of_forecasts_exists_the_latest_fold_residuals_fill_the_recent_window():
    rng = np.random.default_rng(7)
    early = rng.normal(0, 2.0, 200)  # early folds: models fitted on few rows, wide errors
    late = rng.normal(0, 0.5, 60)
    ci = ConformalInterval(0.8).fit(np.concatenate([early, late]))
    assert np.array_equal(ci.tail_, late[-24:])
    # a new model with no forecasts made yet: as if its last 24 fold residuals were recent ones
    fresh = ci.bounds_with(0.0, np.empty(0))
    assert fresh == ci.bounds_with(0.0, late[-24:])
    assert fresh[1] - fresh[0] < ci.upper_ - ci.lower_  # narrower than the early folds alone say
    # ten real ones: the tail fills only the rest of the window
    real = rng.normal(0, 1.0, 10)
    assert ci.bounds_with(0.0, real) == ci.bounds_with(0.0, np.concatenate([late[-14:], real]))
    # a day of them: the tail plays no part
    day = rng.normal(0, 1.0, 24)
    ci_without = ConformalInterval.from_dict({**ci.as_dict(), "tail": None})
    assert ci.bounds_with(0.0, day) == ci_without.bounds_with(0.0, day)
    assert ConformalInterval.from_dict(ci.as_dict()).bounds_with(0.0, np.empty(0)) == fresh  # saved with the model


def test_the_interval_level_adapts_to_how_the_intervals_issued_lately_covered(walk_bundle):
    bundle, frame = walk_bundle
    assert bundle.adapted_coverage(None) is None
    assert bundle.adapted_coverage(np.ones(11, dtype=bool)) is None  # too few to judge
    assert bundle.adapted_coverage(np.array([True] * 18 + [False] * 2)) == pytest.approx(0.7)  # 90 % covered
    assert bundle.adapted_coverage(np.array([True] * 10 + [False] * 10)) == pytest.approx(0.95)  # 50 %: capped
    assert bundle.adapted_coverage(np.array([True] * 16 + [False] * 4)) == pytest.approx(0.8)  # on target
    origin = frame.index[-30]
    row = bundle.builder.arrays(frame, [frame.index.get_loc(origin)], [3], check=False)[3][0]
    value = float(bundle.values(row.reshape(1, -1), 3)[0])
    recent = np.random.default_rng(1).normal(0, 0.02, 30)
    width = lambda hits: np.subtract(*bundle.bounds(value, 3, recent, row, hits)[::-1])
    nominal = width(None)
    assert width(np.array([True] * 18 + [False] * 2)) < nominal < width(np.array([True] * 13 + [False] * 7))
    assert width(np.array([True] * 16 + [False] * 4)) == pytest.approx(nominal)
