import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings
from artq.errors import InputError, ModelError, NotEnoughData
from artq.forecasting import HorizonForecast, train_bundle


def origin_of(frame, pos):
    return frame.index[pos].to_pydatetime()


def test_predict_all_gives_six_horizons_with_bounds_and_drivers(bundle, small_frame):
    origin = origin_of(small_frame, -30)
    fcs = bundle.predict_all(small_frame, origin)
    assert [f.horizon for f in fcs] == [1, 2, 3, 4, 5, 6]
    for f in fcs:
        assert isinstance(f, HorizonForecast)
        assert f.target_hour == origin + pd.Timedelta(hours=f.horizon)
        assert f.lower <= f.value <= f.upper
        assert f.coverage == 0.8
        assert 1 <= len(f.drivers) <= 5
        groups = {g for g, _ in f.drivers}
        assert groups <= {"ART history", "calendar", "missing data", "main load", "main errors",
                          "ABPServer1 load", "ABPServer1 response time", "ABPServer1 errors",
                          "s2 load", "s2 response time", "s2 errors"}


def test_predict_uses_only_rows_up_to_the_origin(bundle, small_frame):
    origin = origin_of(small_frame, -30)
    changed = small_frame.copy()
    changed.loc[changed.index > origin] = 1e9
    for h in (1, 6):
        assert bundle.predict(small_frame, origin, h) == bundle.predict(changed, origin, h)


def test_predict_needs_only_history_hours_needed_rows(bundle, small_frame):
    origin = small_frame.index[-30]
    short = small_frame.loc[:origin].iloc[-bundle.history_hours_needed :]
    assert bundle.predict(short, origin.to_pydatetime(), 4).value == pytest.approx(
        bundle.predict(small_frame, origin.to_pydatetime(), 4).value, rel=1e-9)


def test_predict_validates_horizon(bundle, small_frame):
    with pytest.raises(InputError) as exc:
        bundle.predict(small_frame, origin_of(small_frame, -30), 7)
    assert str(exc.value) == "`horizon` must be in 1..6. Got 7."


def test_a_series_absent_from_the_frame_counts_as_missing(bundle, small_frame):
    origin = origin_of(small_frame, -30)
    blank = small_frame.assign(cpm_s2=np.nan)
    assert bundle.predict(small_frame.drop(columns=["cpm_s2"]), origin, 2) == bundle.predict(blank, origin, 2)


def test_predict_without_the_target_column_is_a_model_error(bundle, small_frame):
    with pytest.raises(ModelError) as exc:
        bundle.predict(small_frame.drop(columns=["art"]), origin_of(small_frame, -30), 1)
    assert str(exc.value) == ("the frame has no 'art' column, which model version (unsaved) forecasts. "
                              "Fetch its history first.")


def test_bundle_beats_seasonal_naive_on_validation(bundle):
    m = bundle.metrics_
    assert m["mean_mae"] < m["seasonal_naive_24_mean_mae"]
    assert set(m["horizons"]) == {"1", "2", "3", "4", "5", "6"}
    assert all(bundle.transforms_[h].name in m["horizons"][str(h)]["transform"] for h in range(1, 7))


def test_training_refuses_too_little_history(synth):
    with pytest.raises(NotEnoughData) as exc:
        train_bundle(synth(24 * 5), "art", ForecastSettings(min_training_hours=24 * 7))
    assert str(exc.value) == ("training needs at least 168 hours with a known target; got 120. "
                              "Backfill more history or lower `forecast.min_training_hours`.")


def test_training_reports_progress(synth):
    seen = []
    train_bundle(synth(24 * 9, seed=4), "art", ForecastSettings(training_days=9, min_training_hours=100),
                 exog="none", progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen[-1][1] == seen[-1][2] >= len(seen) - 1
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    assert {stage.split()[0] for stage, _, _ in seen if stage != "done"} == {f"h{h}" for h in range(1, 7)}


def test_missing_origin_value_still_forecasts(bundle, small_frame):
    frame = small_frame.copy()
    origin = frame.index[-30]
    frame.loc[origin, "art"] = np.nan
    fc = bundle.predict(frame, origin.to_pydatetime(), 1)
    assert np.isfinite(fc.value) and fc.lower <= fc.value <= fc.upper


def test_metrics_are_strict_json_with_validation_coverage_and_the_inputs(bundle):
    import json

    text = json.dumps(bundle.metrics_, allow_nan=False)  # the model_versions row stores them as JSON
    m = json.loads(text)
    assert 0 <= m["mean_coverage"] <= 1
    assert all(0 <= m["horizons"][str(h)]["coverage"] <= 1 for h in range(1, 7))
    assert m["mean_mae"] <= m["last_value_mean_mae"] and m["mean_mae"] <= m["seasonal_naive_24_mean_mae"]
    assert set(m["inputs"]) == {"used", "screened_in", "dropped"} and m["inputs"]["used"] == bundle.exog
