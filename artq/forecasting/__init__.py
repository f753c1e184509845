"""Forecasting: leak-proof features, six XGBoost horizon models with conformal intervals,
time-ordered tuning, a model registry with champion/challenger, backtest and drift checks.

    from artq.forecasting import train_bundle, ModelBundle, HorizonForecast, registry
"""

from artq.forecasting import registry
from artq.forecasting.features import FeatureBuilder
from artq.forecasting.model import HorizonForecast, ModelBundle, train_bundle
from artq.forecasting.registry import VersionInfo

__all__ = ["FeatureBuilder", "HorizonForecast", "ModelBundle", "VersionInfo", "registry", "train_bundle"]
