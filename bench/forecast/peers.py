"""The forecasters artq is compared with, run on exactly artq's rolling-origin splits.

Every peer gets, per refit block, the same training window (rows up to the block's first origin,
at most ``training_hours`` of them) and, per origin, only rows at or before the origin.

- skforecast ``ForecasterDirect`` and mlforecast direct (``max_horizon``), both with XGBoost,
  lags 1..24 and 168, log1p of the target when it is never negative (MACHINE-NOTES: cuts tree
  error 12-37 %), the hour and weekday of the target hour, and the exogenous columns *lagged by
  6 hours*: both libraries give the step-h model the exogenous row at the target time, so
  ``x[t0 + h - 6]`` is the freshest value that is known at the origin for every h <= 6.
- statsforecast MSTL (seasons 24 and 168, or 24 alone on short windows) on log1p of the target,
  refitted at every origin on the last 28 days (it forecasts from the end of its series).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

H = 6
LAGS = list(range(1, 25)) + [168]
# one thread each, like artq on a busy host (OpenMP threads on a loaded 2-core machine are 15x slower)
XGB = dict(n_estimators=300, max_depth=5, learning_rate=0.06, subsample=0.8, colsample_bytree=0.7,
           tree_method="hist", max_bin=64, n_jobs=1, random_state=0, verbosity=0)


def _past_filled(y: pd.Series) -> pd.Series:
    """Peers cannot take NaN: carry the last known value forward (never from the future)."""
    return y.ffill().bfill() if y.isna().any() else y


def _exog_table(frame: pd.DataFrame, target: str, exog: list[str]) -> pd.DataFrame:
    """Exogenous inputs indexed by *target* time: lagged by H, plus the target hour's calendar."""
    X = frame[exog].shift(H).ffill() if exog else pd.DataFrame(index=frame.index)
    X = X.add_suffix(f"_lag{H}")
    X["hour"] = frame.index.hour.astype(float)
    X["weekday"] = frame.index.day_of_week.astype(float)
    return X.fillna(0.0)


def _log_ok(y: pd.Series) -> bool:
    return bool(np.nanmin(y.to_numpy()) >= 0)


def skforecast_direct(frame, target, exog, blocks, training_hours) -> dict[int, pd.Series]:
    from sklearn.preprocessing import FunctionTransformer
    from skforecast.direct import ForecasterDirect
    from xgboost import XGBRegressor

    y_all = frame[target].astype(float)
    X_all = _exog_table(frame, target, exog)
    out: dict[int, list] = {h: [] for h in range(1, H + 1)}
    for block in blocks:
        y = _past_filled(y_all.loc[: block[0]].iloc[-training_hours:])
        y.index.freq = "h"
        tr = FunctionTransformer(np.log1p, np.expm1) if _log_ok(y) else None
        f = ForecasterDirect(XGBRegressor(**XGB), steps=H, lags=LAGS, transformer_y=tr, n_jobs=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.fit(y, exog=X_all.loc[y.index])
            for origin in block:
                lw = _past_filled(y_all.loc[:origin].iloc[-(max(LAGS) + 24) :])
                lw.index.freq = "h"
                fut = X_all.loc[origin + pd.Timedelta(hours=1) : origin + pd.Timedelta(hours=H)]
                fut.index.freq = "h"
                pred = f.predict(steps=H, last_window=lw, exog=fut)
                for h in range(1, H + 1):
                    out[h].append((origin, float(pred.iloc[h - 1])))
    return {h: pd.Series(dict(v)) for h, v in out.items()}


def mlforecast_direct(frame, target, exog, blocks, training_hours) -> dict[int, pd.Series]:
    from mlforecast import MLForecast
    from mlforecast.target_transforms import GlobalSklearnTransformer
    from sklearn.preprocessing import FunctionTransformer
    from xgboost import XGBRegressor

    y_all = frame[target].astype(float)
    X_all = _exog_table(frame, target, exog)
    xcols = list(X_all.columns)

    def long(idx):
        d = X_all.loc[idx].copy()
        d.insert(0, "ds", idx.tz_localize(None))
        d.insert(0, "unique_id", "s")
        return d

    out: dict[int, list] = {h: [] for h in range(1, H + 1)}
    for block in blocks:
        y = _past_filled(y_all.loc[: block[0]].iloc[-training_hours:])
        tt = [GlobalSklearnTransformer(FunctionTransformer(np.log1p, np.expm1))] if _log_ok(y) else None
        m = MLForecast(models={"xgb": XGBRegressor(**XGB)}, freq="h", lags=LAGS, target_transforms=tt)
        df = long(y.index)
        df["y"] = y.to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m.fit(df, static_features=[], max_horizon=H)
            for origin in block:
                hist = _past_filled(y_all.loc[:origin].iloc[-(max(LAGS) + 48) :])
                new = long(hist.index)
                new["y"] = hist.to_numpy()
                fut = long(pd.date_range(origin + pd.Timedelta(hours=1), periods=H, freq="h"))
                pred = m.predict(h=H, new_df=new, X_df=fut[["unique_id", "ds", *xcols]])
                for h in range(1, H + 1):
                    out[h].append((origin, float(pred["xgb"].iloc[h - 1])))
    return {h: pd.Series(dict(v)) for h, v in out.items()}


def statsforecast_mstl(frame, target, exog, blocks, training_hours, window_hours: int = 24 * 28) -> dict[int, pd.Series]:
    from statsforecast.models import MSTL

    y_all = frame[target].astype(float)
    log = _log_ok(y_all.loc[: blocks[0][0]])
    out: dict[int, list] = {h: [] for h in range(1, H + 1)}
    for block in blocks:
        for origin in block:
            y = _past_filled(y_all.loc[:origin].iloc[-window_hours:]).to_numpy()
            seasons = [24, 168] if len(y) >= 2 * 168 + 24 else [24]
            z = np.log1p(y) if log else y
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fc = MSTL(season_length=seasons).forecast(y=z, h=H)["mean"]
            fc = np.expm1(fc) if log else fc
            for h in range(1, H + 1):
                out[h].append((origin, float(fc[h - 1])))
    return {h: pd.Series(dict(v)) for h, v in out.items()}


PEERS = {
    "skforecast_direct": skforecast_direct,
    "mlforecast_direct": mlforecast_direct,
    "statsforecast_mstl": statsforecast_mstl,
}
