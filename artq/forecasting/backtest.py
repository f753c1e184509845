"""Rolling-origin backtest on any hourly CSV, against the last value and seasonal naive 24 h and 168 h.

At every test hour ``t`` the models forecast ``t+1..t+6`` from rows up to ``t`` only; they are
refitted every ``refit_every`` hours on the data up to the refit origin.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from artq.config import ForecastSettings
from artq.errors import InputError, NotEnoughData
from artq.forecasting.baselines import (
    SEASONS,
    in_sample_scale,
    last_value,
    seasonal_naive,
)
from artq.forecasting.intervals import empirical_coverage
from artq.forecasting.model import _resolve_exog, train_bundle

BOOKKEEPING = ("n_obs", "n_minutes", "label", "anomaly")  # never fed as inputs by --exog auto
BACKTEST_MIN_TRAINING_HOURS = 168
MAX_CSV_HOURS = 24 * 366 * 5  # five years of hours: a longer span is a typo'd timestamp, not data
MAX_ABS_VALUE = 1e15  # larger magnitudes are corrupt cells (and overflow the log scale's sums)
BASELINES = ("last_value", *SEASONS)


def load_csv(path: str | os.PathLike, target: str, exog: str = "auto") -> pd.DataFrame:
    """Read an hourly CSV with a ``timestamp`` column into the wide hourly frame."""
    p = str(path)
    if not os.path.isfile(p):
        raise InputError(f"{p}: no such file. Check the path given to --csv.")
    try:
        raw = pd.read_csv(p, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot be read as CSV ({str(exc).strip().splitlines()[0]}).") from None
    if "timestamp" not in raw.columns:
        raise InputError(f"{p}: no `timestamp` column. The header must name one column `timestamp` "
                         f"(ISO 8601, UTC). Columns found: {', '.join(raw.columns)}.")
    if target not in raw.columns or target == "timestamp":
        others = ", ".join(c for c in raw.columns if c != "timestamp")
        raise InputError(f"{p}: no column {target!r} for --target. Columns found: {others}.")
    if len(raw) == 0:
        raise InputError(f"{p}: has a header but no rows.")
    times = pd.to_datetime(raw["timestamp"].str.strip(), utc=True, errors="coerce", format="ISO8601")
    if times.isna().any():
        i = int(np.flatnonzero(times.isna())[0])
        raise InputError(f"{p}: line {i + 2}: `timestamp` {raw['timestamp'].iloc[i]!r} is not an ISO 8601 "
                         "time. Write times such as 2026-11-26T08:00:00Z.")
    off_hour = times != times.dt.floor("h")
    if off_hour.any():
        i = int(np.flatnonzero(off_hour)[0])
        raise InputError(f"{p}: line {i + 2}: `timestamp` {raw['timestamp'].iloc[i]!r} is not on a whole hour. "
                         "The CSV must be hourly: aggregate finer data to one row per hour first.")
    dup = times.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InputError(f"{p}: line {i + 2}: duplicate `timestamp` {raw['timestamp'].iloc[i]!r}. "
                         "Keep one row per hour.")
    _check_span(p, times, raw["timestamp"])
    if exog == "auto":
        cols = [c for c in raw.columns if c not in ("timestamp", target)
                and not any(k in c.lower() for k in BOOKKEEPING)]
    elif exog == "none":
        cols = []
    else:
        cols = [c.strip() for c in str(exog).split(",") if c.strip()]
        for c in cols:
            if c not in raw.columns or c in ("timestamp", target):
                raise InputError(f"{p}: no column {c!r} named in --exog (it must be a column other than "
                                 f"`timestamp` and the target). Columns found: {', '.join(raw.columns)}.")
    data = {}
    for c in [target, *cols]:
        text = raw[c].str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad = values.isna() & (text != "") & ~text.str.lower().isin(["nan", "null", "na"])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            if exog == "auto" and c != target:
                continue  # a text column: not an input
            raise InputError(f"{p}: line {i + 2}: column {c!r} has the non-numeric value {text.iloc[i]!r}. "
                             "Use numbers, or leave the cell empty for a missing hour.")
        absurd = ~np.isfinite(values.fillna(0.0)) | (values.abs() > MAX_ABS_VALUE)
        if absurd.any():
            i = int(np.flatnonzero(absurd)[0])
            if exog == "auto" and c != target:
                continue  # a column with corrupt cells: not an input
            raise InputError(f"{p}: line {i + 2}: column {c!r} has the value {text.iloc[i]!r}, outside the accepted "
                             f"range of finite numbers within ±{MAX_ABS_VALUE:.0e}. Fix the cell, or leave it empty "
                             "for a missing hour.")
        data[c] = values.to_numpy(dtype=float)
    frame = pd.DataFrame(data, index=pd.DatetimeIndex(times, name="timestamp")).sort_index()
    if frame[target].notna().sum() == 0:
        raise InputError(f"{p}: column {target!r} has no values.")
    if exog == "auto":  # constant columns carry nothing
        frame = frame[[target] + [c for c in frame.columns[1:] if frame[c].nunique(dropna=True) > 1]]
    grid = pd.date_range(frame.index[0], frame.index[-1], freq="h", tz="UTC")
    return frame.reindex(grid)  # missing hours become NaN rows, never filled


def _check_span(p: str, times: pd.Series, text: pd.Series) -> None:
    """Refuse a file whose hourly grid would be absurdly long (one typo'd year expands to millions of
    rows), naming the row farthest from the others."""
    first, last = times.min(), times.max()
    hours = (last - first) / pd.Timedelta(hours=1) + 1
    if hours <= MAX_CSV_HOURS:
        return
    median = times.sort_values().iloc[len(times) // 2]
    i = int(np.argmax(np.abs((times - median) / pd.Timedelta(hours=1)).to_numpy()))
    raise InputError(
        f"{p}: line {i + 2}: `timestamp` {text.iloc[i]!r} lies {abs(times.iloc[i] - median) / pd.Timedelta(days=1):,.0f} "
        f"days from the middle of the file, so the hourly grid would span {hours:,.0f} hours (the limit is "
        f"{MAX_CSV_HOURS:,}, five years). Fix that timestamp."
    )


@dataclass
class BacktestReport:
    target: str
    exog: list[str]
    test_hours: int
    refit_every: int
    coverage_nominal: float
    predictions: pd.DataFrame  # origin, horizon, actual, artq, lower, upper, last_value, seasonal_naive_24, _168
    scale: float  # in-sample seasonal-naive-24 MAE (MASE denominator)
    spike_threshold: float
    metrics: dict = field(default_factory=dict)
    inputs_used: list[str] = field(default_factory=list)  # inputs the refitted models read (any refit)

    def __post_init__(self) -> None:
        self.metrics = {"artq": _metrics(self.predictions, "artq", self.scale, self.spike_threshold)}
        for name in BASELINES:
            self.metrics[name] = _metrics(self.predictions, name, self.scale, self.spike_threshold)

    def as_dict(self) -> dict:
        p = self.predictions
        out = {"target": self.target, "exog": self.exog, "test_hours": self.test_hours,
               "refit_every": self.refit_every, "coverage_nominal": self.coverage_nominal,
               "first_origin": p["origin"].min().isoformat(), "last_origin": p["origin"].max().isoformat(),
               "mase_scale": _clean(self.scale), "spike_threshold": _clean(self.spike_threshold),
               "inputs_used": list(self.inputs_used)}
        out.update(self.metrics["artq"])
        out["baselines"] = {name: self.metrics[name] for name in BASELINES}
        return out

    def render(self):
        from rich.table import Table

        table = Table(title=f"Backtest of {self.target!r}: {self.test_hours} origins, refit every {self.refit_every} h")
        for col in ("model", "horizon", "MAE", "RMSE", "MASE", "coverage", "spike P", "spike R"):
            table.add_column(col, justify="right" if col not in ("model",) else "left")
        fmt = lambda v: "-" if v is None else f"{v:.3g}"
        labels = {"artq": "artq", "last_value": "last", "seasonal_naive_24": "snaive24", "seasonal_naive_168": "snaive168"}
        for name, m in self.metrics.items():
            for h, hm in [*m["horizons"].items(), ("all", {"mae": m["mean_mae"], "rmse": m["mean_rmse"],
                          "mase": m["mean_mase"], "coverage": m["coverage"],
                          "spike_precision": m["spike_precision"], "spike_recall": m["spike_recall"]})]:
                table.add_row(labels[name], h, fmt(hm["mae"]), fmt(hm["rmse"]), fmt(hm["mase"]), fmt(hm["coverage"]),
                              fmt(hm["spike_precision"]), fmt(hm["spike_recall"]), end_section=h == "all")
        return table


def _clean(v) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)


def _scores(actual: np.ndarray, pred: np.ndarray, scale: float, thr: float,
            lower: np.ndarray | None, upper: np.ndarray | None) -> dict:
    ok = np.isfinite(actual) & np.isfinite(pred)
    a, f = actual[ok], pred[ok]
    mae = float(np.mean(np.abs(a - f))) if ok.any() else float("nan")
    hit_a, hit_f = a > thr, f > thr
    return {
        "mae": _clean(mae), "rmse": _clean(float(np.sqrt(np.mean((a - f) ** 2))) if ok.any() else None),
        "mase": _clean(mae / scale if scale > 0 else None),
        "coverage": None if lower is None else _clean(empirical_coverage(actual, lower, upper)),
        "spike_precision": _clean(float((hit_a & hit_f).sum() / hit_f.sum()) if hit_f.any() else None),
        "spike_recall": _clean(float((hit_a & hit_f).sum() / hit_a.sum()) if hit_a.any() else None),
        "n": int(ok.sum()),
    }


def _metrics(p: pd.DataFrame, model: str, scale: float, thr: float) -> dict:
    bounds = model == "artq"
    horizons = {}
    for h, g in p.groupby("horizon"):
        horizons[str(h)] = _scores(g["actual"].to_numpy(), g[model].to_numpy(), scale, thr,
                                   g["lower"].to_numpy() if bounds else None, g["upper"].to_numpy() if bounds else None)
    overall = _scores(p["actual"].to_numpy(), p[model].to_numpy(), scale, thr,
                      p["lower"].to_numpy() if bounds else None, p["upper"].to_numpy() if bounds else None)
    maes = [m["mae"] for m in horizons.values() if m["mae"] is not None]
    return {"mean_mae": _clean(float(np.mean(maes)) if maes else None), "mean_rmse": overall["rmse"],
            "mean_mase": overall["mase"], "coverage": overall["coverage"],
            "spike_precision": overall["spike_precision"], "spike_recall": overall["spike_recall"],
            "horizons": horizons}


def backtest_origins(index: pd.DatetimeIndex, test_hours: int, horizons: int = 6) -> pd.DatetimeIndex:
    """The last ``test_hours`` origins whose ``horizons`` targets all lie inside ``index``."""
    return index[len(index) - horizons - test_hours : len(index) - horizons]


def refit_blocks(origins: pd.DatetimeIndex, refit_every: int) -> list[pd.DatetimeIndex]:
    """Consecutive origin blocks; the model for a block is fitted on data up to its first origin."""
    return [origins[i : i + refit_every] for i in range(0, len(origins), refit_every)]


def backtest_frame(frame: pd.DataFrame, target: str, exog: str | Sequence[str] = "auto", test_hours: int = 168,
                   refit_every: int = 24, progress: Callable[[int, int], None] | None = None,
                   settings: ForecastSettings | None = None) -> BacktestReport:
    """Rolling-origin backtest of artq and the seasonal-naive baselines on ``frame``."""
    for name, v in (("test_hours", test_hours), ("refit_every", refit_every)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"`{name}` must be a whole number >= 1. Got {v!r}.")
    s = settings or ForecastSettings(min_training_hours=BACKTEST_MIN_TRAINING_HOURS)
    cols = _resolve_exog(frame, target, exog)
    H = s.horizons
    train_rows = len(frame) - test_hours - H
    if train_rows < s.min_training_hours + H:
        raise NotEnoughData(
            f"the data has {len(frame)} hours; --test-hours {test_hours} leaves {max(train_rows, 0)} for the first "
            f"training, fewer than the {s.min_training_hours + H} needed. Lower --test-hours or use a longer file."
        )
    origins = backtest_origins(frame.index, test_hours, H)
    blocks = refit_blocks(origins, refit_every)
    y = frame[target].astype(float)
    past = y.loc[: origins[0]]
    rows, used = [], []
    earlier: dict[int, list[pd.Series]] = {h: [] for h in range(1, H + 1)}  # what the live cycle would have stored
    for i, block in enumerate(blocks):
        bundle = train_bundle(frame.loc[: block[0], [target, *cols]], target, replace(s), exog=cols)
        used += [c for c in bundle.exog if c not in used]
        forecast_before = {h: pd.concat(v) if v else pd.DataFrame(columns=["value", "lower", "upper"], dtype=float)
                           for h, v in earlier.items()}
        preds = bundle.predict_frame(frame.loc[: block[-1]], block, past=forecast_before)
        for h, df in preds.items():
            earlier[h].append(df[["value", "lower", "upper"]])
            part = pd.DataFrame({"origin": block, "horizon": h,
                                 "actual": y.reindex(block + pd.Timedelta(hours=h)).to_numpy(),
                                 "artq": df["value"].to_numpy(), "lower": df["lower"].to_numpy(),
                                 "upper": df["upper"].to_numpy()})
            part["last_value"] = last_value(y, block, h)
            for name, season in SEASONS.items():
                part[name] = seasonal_naive(y, block, h, season)
            rows.append(part)
        if progress:
            progress(i + 1, len(blocks))
    predictions = pd.concat(rows, ignore_index=True).sort_values(["origin", "horizon"], ignore_index=True)
    return BacktestReport(target, list(cols), test_hours, refit_every, s.interval_coverage, predictions,
                          in_sample_scale(past), float(np.nanquantile(past, 0.95)), inputs_used=used)
