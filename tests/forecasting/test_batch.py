"""predict_many (the live cycle's one prediction function) gives what predict_all and predict_frame give."""

import numpy as np
import pandas as pd
import pytest

from artq.forecasting.batch import predict_many


def _recent_pairs(bundle, frame, origin, h):
    """(actual, forecast) of horizon h from origins at or after the training window's end, for
    target hours in the last 48 up to the origin: what the live cycle reads back from its stored
    forecasts of one model version."""
    end = pd.Timestamp(bundle.training_window_["end"])
    earlier = frame.index[(frame.index >= origin - pd.Timedelta(hours=48 + h)) & (frame.index < origin)]
    preds = bundle.predict_frame(frame, earlier)[h]["value"]
    when = earlier + pd.Timedelta(hours=h)
    keep = (earlier >= end) & (when > origin - pd.Timedelta(hours=48)) & (when <= origin)
    actual = frame[bundle.target].reindex(when[keep]).to_numpy()
    return np.column_stack([actual, preds.to_numpy()[keep]])


@pytest.mark.parametrize("back", [30, 8])
def test_predict_many_matches_predict_all(bundle, small_frame, back):
    origin = small_frame.index[-back]
    single = bundle.predict_all(small_frame, origin.to_pydatetime())
    rows = bundle.builder.transform_at(small_frame, pd.DatetimeIndex([origin]), range(1, 7))
    for h, one in zip(range(1, 7), single, strict=True):
        X = rows[h].set_axis(["ABP"])
        got = predict_many([bundle], X, h, [_recent_pairs(bundle, small_frame, origin, h)])[0]
        assert got["application"] == "ABP"
        assert got["value"] == pytest.approx(one.value, rel=1e-12)
        assert (got["lower"], got["upper"]) == (pytest.approx(one.lower, rel=1e-9), pytest.approx(one.upper, rel=1e-9))
        assert [d[0] for d in got["drivers"]][:5] == [d[0] for d in one.drivers]
        assert len(got["drivers"]) <= 8


def test_predict_many_serves_several_applications_each_with_its_own_row(bundle, small_frame):
    origins = pd.DatetimeIndex([small_frame.index[-40], small_frame.index[-20]])
    rows = bundle.builder.transform_at(small_frame, origins, [2])[2].set_axis(["A", "B"])
    got = predict_many([bundle, bundle], rows, 2)
    assert [g["application"] for g in got] == ["A", "B"]
    alone = [predict_many([bundle], rows.iloc[[i]], 2)[0]["value"] for i in range(2)]
    assert [g["value"] for g in got] == alone
    assert got[0]["value"] != got[1]["value"]
    for g in got:
        assert g["lower"] <= g["value"] <= g["upper"] and g["coverage"] == 0.8


def test_without_drivers_the_forecast_is_the_same_and_the_drivers_come_on_demand(bundle, small_frame):
    origin = small_frame.index[-12]
    rows = bundle.builder.transform_at(small_frame, pd.DatetimeIndex([origin]), [3])[3].set_axis(["ABP"])
    recent = [_recent_pairs(bundle, small_frame, origin, 3)]
    full = predict_many([bundle], rows, 3, recent)[0]
    lean = predict_many([bundle], rows, 3, recent, drivers=False)[0]
    assert lean["drivers"] == [] and full["drivers"]
    assert {k: v for k, v in lean.items() if k != "drivers"} == {k: v for k, v in full.items() if k != "drivers"}
    on_demand = bundle.drivers(rows.to_numpy(dtype=float)[0], 3, lean["value"], top=8)
    assert [[g, float(c)] for g, c in on_demand] == full["drivers"]
