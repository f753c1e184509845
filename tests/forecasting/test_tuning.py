import copy
import itertools

import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings
from artq.forecasting import registry, train_bundle, tuning
from artq.forecasting.features import FeatureBuilder
from artq.forecasting.transforms import BaseColumns, TargetTransform


@pytest.mark.parametrize("n_rows, horizon", [(2000, 1), (2000, 6), (400, 3), (200, 6)])
def test_folds_are_time_ordered_with_a_gap_of_h(n_rows, horizon):
    splits = tuning.folds(n_rows, horizon)
    assert 1 <= len(splits) <= tuning.N_FOLDS
    for fit, test in splits:
        assert fit.max() + horizon < test.min()  # a purge of h rows: no fitted target inside the fold
        assert len(fit) >= tuning.MIN_FIT_ROWS and len(test) >= 24
        assert test.max() < n_rows
    tests = [t for _, t in splits]
    assert all(a.max() < b.min() for a, b in itertools.pairwise(tests))  # folds follow each other
    assert tests[-1].max() == n_rows - 1
    assert splits[0][0].min() >= max(0, n_rows - tuning.SELECTION_ROWS)


def test_folds_refuse_a_history_too_short():
    with pytest.raises(ValueError, match="too few for time-ordered folds"):
        tuning.folds(90, 6)


def _problem(synth, h, hours=24 * 14):
    frame = synth(hours, seed=5)
    builder = FeatureBuilder("art", ["cpm_s1", "art_s1"])
    X = builder.transform(frame, [h])[h].to_numpy()
    y = frame["art"].shift(-h).to_numpy()
    ok = np.isfinite(y)
    names = builder.feature_names
    exog = np.array([i for i, n in enumerate(names) if n.startswith(("cpm_s1", "art_s1"))])
    return X[ok], y[ok], BaseColumns.of(names, "art"), names.index("art_level"), exog


def test_selection_scores_every_candidate_on_the_same_fold_rows(synth):
    X, y, cols, level, exog = _problem(synth, 3)
    sel = tuning.select(X, y, 3, cols, level, exog, 0, 0)
    labels = [c.label for c in sel.candidates]
    for naive in ("naive last", "naive daily", "naive weekly", "naive sdelta", "naive wdelta", "naive smed"):
        assert naive in labels  # the naive forecasts compete, unfitted
    assert "model last" in labels and "model sdelta" in labels
    assert all(len(c.fold_mae) == len(sel.fold_ends) for c in sel.candidates)
    assert len(sel.val_pred) == len(sel.val_positions) == sel.fold_ends[-1]
    chosen = next(c for c in sel.candidates if c.label == sel.label)
    best_naive = min((c for c in sel.candidates if c.rank == 0), key=lambda c: c.score)
    assert chosen.score <= best_naive.score  # never worse than the best naive forecast on the folds


def test_selection_is_reproducible_with_a_seed(synth):
    X, y, cols, level, exog = _problem(synth, 2)
    a = tuning.select(X, y, 2, cols, level, exog, 2, seed=11)
    b = tuning.select(X, y, 2, cols, level, exog, 2, seed=11)
    assert a.members == b.members and a.val_mae == b.val_mae
    c = tuning.select(X, y, 2, cols, level, exog, 2, seed=12)
    params = lambda s: [m.members[0].params for m in s.candidates if m.label.startswith("model")][-2:]
    assert params(a) != params(c)


def test_tuned_bundle_stores_its_parameters():
    rng = np.random.default_rng(6)
    idx = pd.date_range("2026-03-02", periods=24 * 12, freq="h", tz="UTC")
    daily = 40 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24)
    frame = pd.DataFrame({"art": 300 + np.cumsum(rng.standard_normal(len(idx)) * 3) + daily}, index=idx)
    s = ForecastSettings(training_days=12, min_training_hours=120, tune_trials=1, seed=3)
    b = train_bundle(frame, "art", s, tune=True, exog="none")
    assert b.tuned_ is True
    for h in range(1, 7):
        for m in b.members_[h]:
            assert (m.n_rounds >= 10 and {"max_depth", "eta", "objective"} <= set(m.params)) or \
                (m.n_rounds == 0 and m.params == {})  # a naive member has nothing to tune


@pytest.mark.parametrize(("days", "averaged"), [(12, True), (40, False)])
def test_two_close_naive_forecasts_are_averaged_only_on_short_evidence(synth, days, averaged):
    X, y, cols, level, exog = _problem(synth, 3, hours=24 * days)
    data = tuning.FoldData(X, y, 3, cols, level, exog)
    naives = [data.naive("last"), data.naive("daily"), data.naive("sdelta")]  # the last two: close
    got = tuning._best_naive(X, y, cols, naives, lambda a, b: data.blend(a, b, rank=0))
    if averaged:  # a short block cannot separate them, and their average beat both on it
        assert got.label == "naive daily & naive sdelta" and got.rank == 0
        assert [m.weight for m in got.members] == [0.5, 0.5]
    else:  # two weeks of rows compare them: the evidence picks one
        assert got is naives[1]


def test_a_close_naive_forecast_is_not_averaged_in_where_the_average_did_worse(synth):
    X, y, cols, level, exog = _problem(synth, 3, hours=24 * 12)
    data = tuning.FoldData(X, y, 3, cols, level, exog)
    naives = [data.naive("last"), data.naive("sdelta")]
    last, shape = (TargetTransform.inv(c.members[0].transform.base_values(X, cols)) for c in naives)
    ok = np.isfinite(last) & np.isfinite(shape) & np.isfinite(y)
    mae = lambda p: float(np.mean(np.abs(p[ok] - y[ok])))
    # the premise: within the tie on short evidence, and their average worse than the better one
    assert mae(shape) < mae(last) <= tuning.NAIVE_TIE * mae(shape) and mae((last + shape) / 2) > mae(shape)
    got = tuning._best_naive(X, y, cols, naives, lambda a, b: data.blend(a, b, rank=0))
    assert got is naives[1]


def _candidate(errors: np.ndarray, folds: int = 3) -> tuning.Candidate:
    per_fold = np.split(errors, folds)
    return tuning.Candidate("c", [], 1, [np.zeros(len(e)) for e in per_fold],
                            np.array([np.nanmean(e) for e in per_fold]), errors)


def test_two_candidates_are_compared_on_the_rows_where_both_forecast():
    # three folds of 48 rows; the naive forecast (last week's hour) exists on the last 24 of each only
    naive = _candidate(np.tile(np.r_[np.full(24, np.nan), np.full(24, 1.0)], 3))
    model = _candidate(np.tile(np.r_[np.full(24, 5.0), np.full(24, 0.8)], 3))  # 20 % better where both forecast
    assert tuning._beats(model, naive, tuning.MARGIN)
    assert not tuning._beats(naive, model, tuning.MARGIN)
    # each over its own rows, the model's error (2.9 a fold) would have lost to the naive's (1.0)
    assert (model.fold_mae > naive.fold_mae).all()
    # it must also win most folds, by the margin on average
    lucky = _candidate(np.r_[np.full(48, 0.5), np.full(48, 1.05), np.full(48, 1.05)])
    assert not tuning._beats(lucky, _candidate(np.ones(144)), tuning.MARGIN)  # 13 % better on average, one fold won
    close = _candidate(np.full(144, 0.99))
    assert not tuning._beats(close, _candidate(np.ones(144)), tuning.MARGIN)  # 1 % better: within the margin


def _working_week(days: int, seed: int = 0) -> pd.DataFrame:
    """Load with a daily shape that halves on Saturdays and Sundays, starting on a Wednesday."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-06-10", periods=24 * days, freq="h", tz="UTC")
    weekend = np.where(idx.day_of_week >= 5, 0.5, 1.0)
    shape = 1 + 0.6 * np.sin(2 * np.pi * (idx.hour.to_numpy() - 8) / 24)
    return pd.DataFrame({"load": 800 * weekend * shape * rng.lognormal(0, 0.05, len(idx))}, index=idx)


@pytest.mark.parametrize("h", [3, 6])
def test_each_naive_forecast_is_judged_on_every_hour_it_exists(h):
    # 10 days to a Friday evening: the same hour last week exists only for the last three weekdays,
    # where it is no better than the same hour yesterday; yesterday's hour failed on the weekend
    # and the Monday after, and those hours count against it
    frame = _working_week(10)
    frame = frame.loc[: "2026-06-19 18:00"]
    builder = FeatureBuilder("load", [])
    X = builder.transform(frame, [h])[h].to_numpy()
    y = frame["load"].shift(-h).to_numpy()
    ok = np.isfinite(y)
    X, y = X[ok], y[ok]
    names = builder.feature_names
    cols = BaseColumns.of(names, "load")
    data = tuning.FoldData(X, y, h, cols, names.index("load_level"), np.array([], dtype=int))
    naives = [data.naive(b) for b in ("last", "daily", "weekly")]
    got = tuning._best_naive(X, y, cols, naives, lambda a, b: data.blend(a, b, rank=0))
    assert got.label == "naive weekly"

    # on the rows where all three exist (the last three weekdays), yesterday's hour does as well:
    # judged there only, it would have been taken or averaged in
    recent = np.isfinite(naives[2].members[0].transform.base_values(X, cols))
    err = lambda c: np.mean(np.abs(TargetTransform.inv(c.members[0].transform.base_values(X[recent], cols)) - y[recent]))
    assert err(naives[1]) <= err(naives[2]) * tuning.NAIVE_TIE


def test_a_blend_weighs_each_side_half_and_the_bundle_forecasts_with_those_weights(synth, bundle, tmp_path):
    X, y, cols, level, exog = _problem(synth, 3)
    data = tuning.FoldData(X, y, 3, cols, level, exog)
    naive = data.blend(data.naive("sdelta"), data.naive("daily"), rank=0)
    blend = data.blend(data.naive("last"), naive)
    assert [m.weight for m in blend.members] == [0.5, 0.25, 0.25]
    assert [m.transform.base for m in blend.members] == ["last", "sdelta", "daily"]

    # the deployed arithmetic (ModelBundle.values) uses the same weights as the folds scored
    b = copy.deepcopy(bundle)
    b.metrics_ = {}  # no guards: the raw blend
    b.members_[1], b.boosters_[1] = blend.members, [b.boosters_[1][0]] * 3  # naive members: no trees read
    rows = b.builder.arrays(synth(24 * 24, seed=3), np.arange(200, 260), [1], check=False)[1]
    bc = b.base_columns
    expected = sum(w * TargetTransform("log", base).decode(np.zeros(len(rows)), rows, bc)
                   for w, base in ((0.5, "last"), (0.25, "sdelta"), (0.25, "daily"))) / b.unit_
    assert np.allclose(b.values(rows, 1), expected)
    assert not np.allclose(expected, np.mean([TargetTransform("log", base).decode(np.zeros(len(rows)), rows, bc)
                                              for base in ("last", "sdelta", "daily")], axis=0) / b.unit_)
    info = registry.save(b, tmp_path, "ABP")  # and a saved model keeps them
    loaded = registry.load(tmp_path, "ABP", info.version, info.sha256)
    assert [m.weight for m in loaded.members_[1]] == [0.5, 0.25, 0.25]
    loaded.metrics_ = {}
    assert np.allclose(loaded.values(rows, 1), expected)
