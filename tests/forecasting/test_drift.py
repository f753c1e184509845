import pandas as pd

from artq.forecasting.drift import check_drift


def test_no_drift_on_data_like_the_training_period(bundle, small_frame):
    report = check_drift(bundle, small_frame, errors={h: [bundle.metrics_["horizons"][str(h)]["mae"]] * 5
                                                       for h in range(1, 7)})
    assert report.drifted is False and report.reasons == []


def test_drift_when_recent_errors_grow(bundle, small_frame):
    ref = bundle.metrics_["horizons"]["2"]["mae"]
    report = check_drift(bundle, small_frame, errors={2: [3 * ref] * 10})
    assert report.drifted
    assert report.reasons == [f"error h2: recent MAE {3 * ref:.4g} over 10 forecasts is more than 1.5x "
                              f"the validation MAE {ref:.4g}."]


def test_drift_when_a_series_the_model_reads_shifts(bundle, small_frame):
    frame = small_frame.copy()
    col = [*bundle.exog, bundle.target][0]  # the inputs it kept, else its own history
    frame.loc[frame.index[-24:], col] *= 20
    report = check_drift(bundle, frame, errors={})
    assert report.drifted
    assert any(r.startswith(f"input {col}: recent mean") for r in report.reasons)


def test_stale_model_is_drift(bundle, small_frame):
    later = small_frame.index[-1] + pd.Timedelta(days=30)
    report = check_drift(bundle, small_frame, now=later.to_pydatetime(), errors={})
    assert report.drifted and report.reasons[0].startswith("stale: trained on data up to")


def test_recent_errors_are_recomputed_from_the_frame(bundle, small_frame):
    report = check_drift(bundle, small_frame)
    assert set(report.recent_mae) == {"1", "2", "3", "4", "5", "6"}
    assert all(v > 0 for v in report.recent_mae.values())
