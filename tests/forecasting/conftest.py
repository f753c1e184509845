"""Small synthetic wide frames: two sub-servers whose load drives the main server's ART."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from artq.config import ForecastSettings


def make_frame(hours: int = 24 * 30, seed: int = 0, noise: float = 0.05, walk: float = 0.0,
               start: str = "2026-01-05T00:00Z") -> pd.DataFrame:
    """A wide hourly frame in the pipeline's contract (`art`, `cpm`, `cpm_s1`, `art_s1`, ...)."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=hours, freq="h", tz="UTC")
    hour = idx.hour.to_numpy()
    daily = 1 + 0.6 * np.sin(2 * np.pi * (hour - 6) / 24)
    weekly = np.where(idx.day_of_week.to_numpy() >= 5, 0.7, 1.0)
    cols = {}
    load_total = np.zeros(hours)
    for i, cap in ((1, 900.0), (2, 700.0)):
        load = 400 * daily * weekly * (1 + 0.1 * rng.standard_normal(hours))
        util = np.clip(load / cap, 0, 0.97)
        cols[f"cpm_s{i}"] = load
        cols[f"art_s{i}"] = 50 / (1 - util) * (1 + noise * rng.standard_normal(hours))
        cols[f"epm_s{i}"] = np.maximum(0, 0.01 * load + rng.standard_normal(hours))
        load_total += load
    level = 1.0 + np.cumsum(walk * rng.standard_normal(hours))
    art = (0.5 * cols["art_s1"] + 0.5 * cols["art_s2"]) * np.exp(level - 1)
    art = art * (1 + noise * rng.standard_normal(hours))
    cols = {"art": art, "cpm": load_total, "epm": cols["epm_s1"] + cols["epm_s2"], **cols}
    return pd.DataFrame(cols, index=idx)


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture
def settings() -> ForecastSettings:
    return ForecastSettings(training_days=30, min_training_hours=24 * 7, seed=1)


SMALL = ForecastSettings(training_days=21, min_training_hours=24 * 7, seed=1)


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    return make_frame(24 * 24, seed=3)


@pytest.fixture(scope="session")
def bundle(small_frame):
    from artq.forecasting import train_bundle

    return train_bundle(small_frame.iloc[: -24 * 2], "art", SMALL, tier_names={"s1": "ABPServer1"})


@pytest.fixture(scope="session")
def synth():
    """The synthetic frame factory, for tests that need their own shapes."""
    return make_frame
