import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings
from artq.forecasting import train_bundle, tuning
from artq.forecasting.features import FeatureBuilder
from artq.forecasting.transforms import TargetTransform


def test_time_split_puts_validation_after_every_fit_target():
    idx = pd.date_range("2026-01-01", periods=500, freq="h", tz="UTC")
    for h in (1, 6):
        fit, val = tuning.time_split(idx, h, 0.2)
        assert len(val) == 100 and val[0] == 400
        assert (idx[fit] + pd.Timedelta(hours=h)).max() <= idx[val].min()
        assert len(fit) == 400 - h + 1


def test_time_split_validates_fraction():
    idx = pd.date_range("2026-01-01", periods=10, freq="h", tz="UTC")
    with pytest.raises(ValueError) as exc:
        tuning.time_split(idx, 1, 1.5)
    assert str(exc.value) == "`val_fraction` must be in (0, 1). Got 1.5."


def _problem(synth, h):
    frame = synth(24 * 14, seed=5)
    X = FeatureBuilder("art", ["cpm_s1", "art_s1"]).transform(frame, [h])[h]
    y = frame["art"].shift(-h).to_numpy()
    ok = np.isfinite(y)
    return X[ok], y[ok]


def test_tuning_validates_only_on_data_after_its_training_rows(synth, monkeypatch):
    h = 3
    X, y = _problem(synth, h)
    seen = []
    real = tuning._matrix

    def spy(rows, names=False):
        seen.append(rows.index)
        return real(rows, names)

    monkeypatch.setattr(tuning, "_matrix", spy)
    sel = tuning.select(X, y, h, "art", [TargetTransform("log", "last"), TargetTransform("id", "level")], 2, 0)
    fit_rows, es_rows, val_rows = seen  # one matrix each, shared by all four fits
    hours = pd.Timedelta(hours=h)
    # every training target hour is at or before the first early-stopping origin, and every
    # early-stopping target hour at or before the first validation origin that scores the fit
    assert fit_rows.max() + hours <= es_rows.min()
    assert es_rows.max() + hours <= val_rows.min()
    assert val_rows.equals(X.index[sel.val_positions])
    learned = [t for t in sel.trials if t.n_rounds > 0]
    assert len(learned) in (2, 4)  # the 2 transforms, + 2 parameter trials unless a naive forecast won
    assert [t.transform for t in sel.trials if t.n_rounds == 0] == ["log_last"]  # persistence competes, unfitted
    for t in sel.trials:
        assert t.fit_end <= t.es_start < t.val_start == val_rows.min()


def test_tuning_is_reproducible_with_a_seed(synth):
    X, y = _problem(synth, 2)
    a = tuning.select(X, y, 2, "art", [TargetTransform("log", "last")], 3, seed=11)
    b = tuning.select(X, y, 2, "art", [TargetTransform("log", "last")], 3, seed=11)
    assert a.members == b.members and a.val_mae == b.val_mae
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    c = tuning.select(X, y, 2, "art", [TargetTransform("log", "last")], 3, seed=12)
    assert [t.params for t in a.trials[1:]] != [t.params for t in c.trials[1:]]


def test_tuned_bundle_stores_its_parameters_and_keeps_the_best_trial():
    rng = np.random.default_rng(6)
    idx = pd.date_range("2026-03-02", periods=24 * 9, freq="h", tz="UTC")
    daily = 40 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24)
    frame = pd.DataFrame({"art": 300 + np.cumsum(rng.standard_normal(len(idx)) * 3) + daily}, index=idx)
    s = ForecastSettings(training_days=9, min_training_hours=120, tune_trials=1, seed=3)
    b = train_bundle(frame, "art", s, tune=True, exog="none")
    assert b.tuned_ is True
    learned = [m for h in range(1, 7) for m in b.members_[h] if m.n_rounds > 0]
    assert learned  # a walk plus a daily cycle: persistence alone misses the cycle
    for m in learned:
        assert {"max_depth", "eta", "objective"} <= set(m.params)
        assert m.n_rounds >= 10
    for h in range(1, 7):
        for m in b.members_[h]:
            assert m.n_rounds > 0 or m.params == {}  # a naive member has nothing to tune


def test_transform_choice_follows_validation():
    # a random walk: predicting the level is hopeless for trees, a difference against the past wins
    rng = np.random.default_rng(0)
    idx = pd.date_range("2026-01-01", periods=24 * 14, freq="h", tz="UTC")
    frame = pd.DataFrame({"art": 200 + np.cumsum(rng.standard_normal(len(idx)) * 3)}, index=idx)
    X = FeatureBuilder("art", []).transform(frame, [1])[1]
    y = frame["art"].shift(-1).to_numpy()
    ok = np.isfinite(y)
    cands = [TargetTransform("id", b) for b in ("level", "last", "seasonal")]
    sel = tuning.select(X[ok], y[ok], 1, "art", cands, 0, 0)
    best = min(sel.trials, key=lambda t: t.val_mae)
    assert sel.members[0].transform.name == best.transform
    assert sel.members[0].transform.base != "level"
