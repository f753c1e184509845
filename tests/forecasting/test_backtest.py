import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from artq.config import ForecastSettings
from artq.errors import InputError, NotEnoughData
from artq.forecasting.backtest import backtest_frame, load_csv

FAST = ForecastSettings(training_days=10, min_training_hours=120, seed=0)


def write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def hourly_csv(tmp_path, hours=24 * 12, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2026-02-02", periods=hours, freq="h", tz="UTC")
    load = 100 + 50 * np.sin(2 * np.pi * idx.hour.to_numpy() / 24) + rng.normal(0, 5, hours)
    lat = 40 + 0.2 * load + rng.normal(0, 2, hours)
    df = pd.DataFrame({"timestamp": idx.strftime("%Y-%m-%dT%H:%M:%SZ"), "latency": lat, "load": load,
                       "n_obs": 12, "nab_anomaly_window": 0})
    p = tmp_path / "series.csv"
    df.to_csv(p, index=False)
    return str(p)


@pytest.mark.parametrize("text, message", [
    ("time,latency\n2026-01-01T00:00Z,1\n",
     "{p}: no `timestamp` column. The header must name one column `timestamp` (ISO 8601, UTC). Columns found: time, latency."),
    ("timestamp,lat\n2026-01-01T00:00Z,1\n", "{p}: no column 'latency' for --target. Columns found: lat."),
    ("timestamp,latency\n2026-01-01T00:00Z,1\nyesterday,2\n",
     "{p}: line 3: `timestamp` 'yesterday' is not an ISO 8601 time. Write times such as 2026-11-26T08:00:00Z."),
    ("timestamp,latency\n2026-01-01T00:00Z,1\n2026-01-01T00:05Z,2\n",
     "{p}: line 3: `timestamp` '2026-01-01T00:05Z' is not on a whole hour. The CSV must be hourly: aggregate finer data to one row per hour first."),
    ("timestamp,latency\n2026-01-01T00:00Z,1\n2026-01-01T00:00Z,2\n",
     "{p}: line 3: duplicate `timestamp` '2026-01-01T00:00Z'. Keep one row per hour."),
    ("timestamp,latency\n2026-01-01T00:00Z,1\n2026-01-01T01:00Z,fast\n",
     "{p}: line 3: column 'latency' has the non-numeric value 'fast'. Use numbers, or leave the cell empty for a missing hour."),
    ("timestamp,latency\n", "{p}: has a header but no rows."),
])
def test_load_csv_messages_name_the_problem_and_the_fix(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        load_csv(p, "latency")
    assert str(exc.value) == message.format(p=p)


def test_load_csv_rejects_unknown_exog(tmp_path):
    p = write(tmp_path, "timestamp,latency,load\n2026-01-01T00:00Z,1,2\n")
    with pytest.raises(InputError) as exc:
        load_csv(p, "latency", "load,cpu")
    assert str(exc.value) == (f"{p}: no column 'cpu' named in --exog (it must be a column other than `timestamp` "
                              "and the target). Columns found: timestamp, latency, load.")


def test_load_csv_keeps_gaps_as_nan_rows_and_skips_bookkeeping_columns(tmp_path):
    p = write(tmp_path, "timestamp,latency,load,n_obs,nab_anomaly_window\n"
                        "2026-01-01T02:00Z,3,1,12,0\n2026-01-01T00:00Z,1,2,12,1\n2026-01-01T01:00Z,,,12,0\n"
                        "2026-01-01T04:00Z,5,4,12,0\n")
    frame = load_csv(p, "latency")
    assert list(frame.columns) == ["latency", "load"]
    assert len(frame) == 5 and str(frame.index.tz) == "UTC"
    assert frame["latency"].isna().tolist() == [False, True, False, True, False]
    assert list(load_csv(p, "latency", "none").columns) == ["latency"]


def test_backtest_reports_artq_and_baselines_per_horizon(tmp_path):
    frame = load_csv(hourly_csv(tmp_path), "latency")
    steps = []
    report = backtest_frame(frame, "latency", "auto", test_hours=24, refit_every=12,
                            progress=lambda d, t: steps.append((d, t)), settings=FAST)
    d = report.as_dict()
    assert steps == [(1, 2), (2, 2)]
    assert d["exog"] == ["load"]
    assert set(d["horizons"]) == {"1", "2", "3", "4", "5", "6"}
    assert d["mean_mae"] == pytest.approx(np.mean([d["horizons"][h]["mae"] for h in d["horizons"]]))
    assert 0 <= d["coverage"] <= 1
    assert set(d["baselines"]) == {"last_value", "seasonal_naive_24", "seasonal_naive_168"}
    assert d["mean_mae"] < d["baselines"]["seasonal_naive_24"]["mean_mae"]
    assert d["mean_mae"] < d["baselines"]["last_value"]["mean_mae"]
    assert set(d["inputs_used"]) <= {"load"}  # never the bookkeeping columns
    assert len(report.predictions) == 24 * 6
    # the last origin's targets are the last rows: nothing beyond the data is scored
    assert pd.Timestamp(d["last_origin"]) == frame.index[-7]
    json.dumps(d)  # JSON-clean (no NaN objects)


def test_backtest_says_when_data_is_too_short(tmp_path):
    frame = load_csv(hourly_csv(tmp_path, hours=24 * 6), "latency")
    with pytest.raises(NotEnoughData) as exc:
        backtest_frame(frame, "latency", test_hours=48, settings=FAST)
    assert str(exc.value) == ("the data has 144 hours; --test-hours 48 leaves 90 for the first training, fewer "
                              "than the 126 needed. Lower --test-hours or use a longer file.")


def test_cli_backtest_writes_json(tmp_path, monkeypatch):
    from artq.cli import app
    from artq.forecasting import backtest as bt

    monkeypatch.setattr(bt, "ForecastSettings", lambda **kw: FAST)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["backtest", "--csv", hourly_csv(tmp_path), "--target", "latency",
                                      "--test-hours", "12", "--refit-every", "12", "--json", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["horizons"]["1"]["mae"] > 0 and "mean_mae" in data
    assert "snaive24" in result.output and "snaive168" in result.output


def test_cli_backtest_help_documents_every_output_field():
    from artq.cli import app

    result = CliRunner().invoke(app, ["backtest", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "Example: artq backtest --csv" in result.output
    text = " ".join(result.output.split())
    for field in ("MAE", "RMSE", "MASE", "coverage", "spike precision", "spike recall", "spike threshold",
                  "95th percentile", "mase_scale", "inputs_used", "last_value", "progress bar"):
        assert field in text, field


def test_cli_backtest_checks_the_json_folder_before_running(tmp_path, monkeypatch):
    from artq.cli import app
    from artq.forecasting import backtest as bt

    ran = []
    monkeypatch.setattr(bt, "backtest_frame", lambda *a, **k: ran.append(1))
    missing = tmp_path / "nowhere" / "report.json"
    result = CliRunner().invoke(app, ["backtest", "--csv", hourly_csv(tmp_path), "--target", "latency",
                                      "--json", str(missing)])
    assert result.exit_code != 0 and ran == []
    assert str(result.exception) == (f"--json {missing}: the folder {missing.parent} does not exist. "
                                     "Create it first or choose another path.")


def test_load_csv_refuses_a_typo_timestamp_that_would_expand_the_grid(tmp_path):
    rows = [f"2026-01-{d:02d}T{h:02d}:00Z,{d + h}" for d in range(1, 4) for h in range(24)]
    rows.insert(30, "0001-01-01T00:00Z,5")
    p = write(tmp_path, "timestamp,latency\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError) as exc:
        load_csv(p, "latency")
    msg = str(exc.value)
    assert msg.startswith(f"{p}: line 32: `timestamp` '0001-01-01T00:00Z' lies ")
    assert msg.endswith("(the limit is 43,920, five years). Fix that timestamp.")
    assert "\n" not in msg


@pytest.mark.parametrize("cell", ["inf", "-inf", "1e308", "-2e300"])
def test_load_csv_refuses_absurd_values_in_one_line(tmp_path, cell):
    p = write(tmp_path, f"timestamp,latency\n2026-01-01T00:00Z,1\n2026-01-01T01:00Z,{cell}\n")
    with pytest.raises(InputError) as exc:
        load_csv(p, "latency")
    assert str(exc.value) == (f"{p}: line 3: column 'latency' has the value {cell!r}, outside the accepted range of "
                              "finite numbers within ±1e+15. Fix the cell, or leave it empty for a missing hour.")


def test_cli_backtest_reports_input_errors(tmp_path):
    from artq.cli import app

    p = write(tmp_path, "time,latency\n2026-01-01T00:00Z,1\n")
    result = CliRunner().invoke(app, ["backtest", "--csv", p, "--target", "latency"])
    assert result.exit_code != 0
    assert isinstance(result.exception, InputError)
    assert "no `timestamp` column" in str(result.exception)
