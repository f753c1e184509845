import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from artq.errors import InputError
from artq.forecasting.explain import feature_group
from artq.forecasting.features import (
    FeatureBuilder,
    check_frame,
    history_hours_needed,
    slog,
    split_column,
)

EXOG = ["cpm", "epm", "cpm_s1", "art_s1", "epm_s1", "cpm_s2", "art_s2", "epm_s2"]


@pytest.mark.parametrize("origin_pos", [200, 300, 400])
@pytest.mark.parametrize("how", ["noise", "nan", "shift"])
def test_features_ignore_values_after_origin(origin_pos, how, synth):
    frame = synth(24 * 20, seed=7)
    builder = FeatureBuilder("art", EXOG)
    before = builder.transform(frame, range(1, 7))
    changed = frame.copy()
    after = changed.index > changed.index[origin_pos]
    rng = np.random.default_rng(origin_pos)
    if how == "noise":
        changed.loc[after] = changed.loc[after] * rng.uniform(0.1, 10, size=changed.loc[after].shape)
    elif how == "nan":
        changed.loc[after] = np.nan
    else:
        changed.loc[after] = changed.loc[after].shift(-5).fillna(1e6).to_numpy()
    later = builder.transform(changed, range(1, 7))
    for h in range(1, 7):
        rows = before[h].index <= frame.index[origin_pos]
        assert list(before[h].columns) == builder.feature_names
        assert_frame_equal(before[h].loc[rows], later[h].loc[rows])
    # and the value right after the origin did change, so the perturbation was real
    assert not np.allclose(frame["art"].iloc[origin_pos + 1 :].fillna(0), changed["art"].iloc[origin_pos + 1 :].fillna(0))


def test_transform_at_needs_only_the_lookback_rows(synth):
    frame = synth(24 * 20, seed=2)
    builder = FeatureBuilder("art", EXOG)
    origin = frame.index[400]
    full = builder.transform(frame, [3])[3].loc[[origin]]
    short = frame.loc[:origin].iloc[-history_hours_needed() :]
    assert_frame_equal(builder.transform_at(short, pd.DatetimeIndex([origin]), [3])[3], full)


def test_feature_names_are_predictable(synth):
    names = FeatureBuilder("art", EXOG).feature_names
    for expected in ["art_level", "art_lag_1", "art_lag_23", "art_med_24", "art_med_168", "art_same_hour_1d",
                     "art_same_hour_7d", "art_same_hour_med_7d", "art_seasonal_step", "cpm_s1_dev_24",
                     "art_s2_delta_1", "epm_s1_dev_3", "art_missing_0", "exog_missing_0", "target_hour",
                     "target_weekday"]:
        assert expected in names
    assert len(names) == len(set(names))


def test_features_are_anchored_to_the_last_value_in_log_scale(synth):
    frame = synth(24 * 10, seed=1)
    X = FeatureBuilder("art", []).transform(frame, [2])[2]
    y = slog(frame["art"].to_numpy())
    p, origin = 200, frame.index[200]
    assert X.loc[origin, "art_level"] == pytest.approx(y[p])
    assert X.loc[origin, "art_lag_3"] == pytest.approx(y[p - 3] - y[p])
    assert X.loc[origin, "art_same_hour_1d"] == pytest.approx(y[p + 2 - 24] - y[p])
    assert X.loc[origin, "art_same_hour_7d"] == pytest.approx(y[p + 2 - 168] - y[p])
    assert X.loc[origin, "art_med_24"] == pytest.approx(np.median(y[p - 23 : p + 1]) - y[p])
    steps = [y[p + 2 - 24 * k] - y[p - 24 * k] for k in range(1, 8)]
    assert X.loc[origin, "art_seasonal_step"] == pytest.approx(np.median(steps))
    assert X.loc[origin, "target_hour"] == (origin + pd.Timedelta(hours=2)).hour
    assert X.loc[origin, "target_weekday"] == (origin + pd.Timedelta(hours=2)).day_of_week


def test_one_origin_gives_the_same_row_as_the_whole_table(synth):
    frame = synth(24 * 12, seed=4)
    frame.iloc[250:253, 0] = np.nan
    builder = FeatureBuilder("art", EXOG)
    table = builder.transform(frame, [1, 6])
    for pos in (5, 170, 251, len(frame) - 1):
        one = builder.arrays(frame, np.array([pos]), [1, 6])
        for h in (1, 6):
            np.testing.assert_array_equal(one[h][0], table[h].iloc[pos].to_numpy())


def test_missing_hours_are_visible_not_filled(synth):
    frame = synth(24 * 10, seed=1)
    frame.iloc[100:103, frame.columns.get_loc("art")] = np.nan
    X = FeatureBuilder("art", []).transform(frame, [1])[1]
    assert X["art_missing_0"].iloc[102] == 1.0
    assert X["art_missing_24"].iloc[102] == 3.0
    # the anchor is the last known value (hour 99); lags that fall on missing hours stay missing
    assert X["art_level"].iloc[102] == pytest.approx(slog(frame["art"].iloc[99]))
    assert np.isnan(X["art_lag_1"].iloc[102])


def test_check_frame_rejects_naive_index(synth):
    frame = synth(48).tz_localize(None)
    with pytest.raises(InputError) as exc:
        check_frame(frame, "art")
    assert str(exc.value) == "`frame` must have a tz-aware UTC DatetimeIndex (one row per hour)."


def test_check_frame_rejects_gaps(synth):
    frame = synth(48).drop(index=synth(48).index[10])
    with pytest.raises(InputError, match="must be a complete hourly grid"):
        check_frame(frame, "art")


def test_split_column_reads_series_names(synth):
    assert split_column("very_slow_abpserver1") == ("very_slow", "abpserver1")
    assert split_column("slow") == ("slow", "")
    assert split_column("cpm_collectionserver") == ("cpm", "collectionserver")
    assert split_column("latency_max") == ("exog", "latency_max")


def test_features_group_by_sub_server(synth):
    tiers = {"abpserver3": "ABPServer3"}
    exog = ["cpm", "cpm_abpserver3", "art_abpserver3", "epm_abpserver3"]
    assert feature_group("cpm_abpserver3_roll_mean_24", "art", exog, tiers) == "ABPServer3 load"
    assert feature_group("art_abpserver3_lag_0", "art", exog, tiers) == "ABPServer3 response time"
    assert feature_group("art_same_hour_1d", "art", exog, tiers) == "ART history"
    assert feature_group("cpm_lag_0", "art", exog, tiers) == "main load"
    assert feature_group("cpm_abpserver3_dev_24", "art", exog, tiers) == "ABPServer3 load"
    assert feature_group("target_hour", "art", exog, tiers) == "calendar"
