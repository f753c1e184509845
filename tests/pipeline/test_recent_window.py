"""The live cycle's interval after a retrain equals the backtest's: both learn from what the
earlier model forecast in the last hours (the sliding conformal window survives a retrain)."""

from __future__ import annotations

import pandas as pd
import pytest

from artq.horizons import HORIZONS
from artq.pipeline import Runtime, train_step
from artq.pipeline import champions
from artq.pipeline.cycle import run_in_process
from artq.timeutil import HOUR
from tests.pipeline.stored import stored_cycle


def test_a_retrained_models_first_interval_uses_the_previous_versions_stored_errors(trained_sqlite):
    settings, t0, _ = trained_sqlite
    rt = Runtime(settings)
    try:
        old = train_step(rt, "ABP", until=t0 - 30 * HOUR)
        with rt.db.session() as s:
            champions.set_champion(s, "ABP", old["version"], "test: the model before the retrain")
        for k in range(24, 0, -1):  # a day of live cycles by the old model
            assert run_in_process(rt, ["ABP"], t0 - k * HOUR, "test")["ABP"]["status"] == "succeeded"
        new = train_step(rt, "ABP", until=t0 - HOUR)
        with rt.db.session() as s:
            champions.set_champion(s, "ABP", new["version"], "test: retrained")
        assert run_in_process(rt, ["ABP"], t0, "test")["ABP"]["status"] == "succeeded"
        bundle, version = rt.champion("ABP")
        live, earlier, frame = stored_cycle(rt, "ABP", t0)
    finally:
        rt.close()
    assert version == new["version"] != old["version"]
    assert all(len(v) == 24 for v in earlier.values())
    backtest_way = bundle.predict_frame(frame, [pd.Timestamp(t0)], past=earlier)
    no_window = bundle.predict_frame(frame, [pd.Timestamp(t0)])
    changed = 0
    for h in HORIZONS:
        f, want = live[h], backtest_way[h].iloc[0]
        assert f.model_version == version
        assert f.value == pytest.approx(want["value"], rel=1e-9)
        assert (f.lower, f.upper) == (pytest.approx(want["lower"], rel=1e-9), pytest.approx(want["upper"], rel=1e-9)), h
        changed += (f.lower, f.upper) != (pytest.approx(no_window[h]["lower"].iloc[0], rel=1e-6),
                                          pytest.approx(no_window[h]["upper"].iloc[0], rel=1e-6))
    assert changed >= 3, "the old model's errors changed (almost) no interval"

