"""``artq backtest``: rolling-origin backtest of artq against the naive forecasts on a CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from artq.errors import InputError

HELP = (
    "Backtest the six horizon forecasts on any hourly CSV: at every test hour t, forecast t+1..t+6 "
    "from data up to t only, refitting on the stated cadence, and compare with the naive forecasts "
    "(last value, seasonal naive 24 h and 168 h).\n\n"
    "Output, per model and horizon (row 'all': over every horizon):\n\n"
    "  MAE      mean absolute error, in the target's units (lower is better).\n\n"
    "  RMSE     root mean squared error (weighs large misses more).\n\n"
    "  MASE     MAE divided by the in-sample MAE of seasonal naive 24 h on the hours before the first "
    "test origin (the JSON's mase_scale); below 1 beats that yardstick.\n\n"
    "  coverage share of actual values inside artq's interval (nominal 80 %; artq only).\n\n"
    "  spike P  spike precision: of the hours forecast above the spike threshold, the share whose actual "
    "value was above it too.\n\n"
    "  spike R  spike recall: of the hours whose actual value was above the spike threshold, the share "
    "that were forecast above it.\n\n"
    "  spike threshold: the 95th percentile of the target before the first test origin "
    "(the JSON's spike_threshold).\n\n"
    "The summary line names the inputs the models used (the screening drops constant, missing, "
    "duplicate and unhelpful columns). --json writes the same figures: target, exog (columns "
    "offered), inputs_used, test_hours, refit_every, coverage_nominal, first_origin, last_origin, "
    "mase_scale, spike_threshold, mean_mae, mean_rmse, mean_mase, coverage, spike_precision, "
    "spike_recall, horizons (per horizon: mae, rmse, mase, coverage, spike_precision, spike_recall, n) "
    "and baselines (the same for last_value, seasonal_naive_24, seasonal_naive_168). "
    "A progress bar shows the refits on stderr.\n\n"
    "Example: artq backtest --csv latency_1h.csv --target latency_mean --exog auto "
    "--test-hours 168 --refit-every 24 --json report.json"
)
MAX_TEST_HOURS = 24 * 366
MAX_REFITS = 2000


def _check_json_path(path: Path) -> None:
    """Checked before the backtest runs: a bad path must not cost the whole run."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InputError(f"--json {path}: is a folder. Give a file name such as {path / 'report.json'}.")
    if not folder.is_dir():
        raise InputError(f"--json {path}: the folder {folder} does not exist. Create it first or choose another path.")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--json {path}: the folder {folder} is not writable. Choose another path.")


def backtest(
    csv: Path = typer.Option(..., "--csv", help="Hourly CSV with a `timestamp` column (ISO 8601, UTC)."),
    target: str = typer.Option(..., "--target", help="Column to forecast."),
    exog: str = typer.Option("auto", "--exog", help="Input columns offered to the models: auto (all other numeric "
                             "columns), none, or COL,COL. The models keep only the inputs that help."),
    test_hours: int = typer.Option(168, "--test-hours", help="Number of forecast origins at the end of the file."),
    refit_every: int = typer.Option(24, "--refit-every", help="Refit the six models every this many hours."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
) -> None:
    """Rolling-origin backtest (see HELP)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from artq.forecasting.backtest import backtest_frame, load_csv

    if not 1 <= test_hours <= MAX_TEST_HOURS:
        raise InputError(f"--test-hours must be between 1 and {MAX_TEST_HOURS} (a year of hours). Got {test_hours}.")
    if not 1 <= refit_every <= MAX_TEST_HOURS:
        raise InputError(f"--refit-every must be between 1 and {MAX_TEST_HOURS}. Got {refit_every}.")
    if -(-test_hours // refit_every) > MAX_REFITS:
        raise InputError(f"--test-hours {test_hours} with --refit-every {refit_every} means more than {MAX_REFITS} "
                         "refits. Raise --refit-every.")
    if json_out is not None:
        _check_json_path(json_out)
    frame = load_csv(csv, target, exog)
    console, err = Console(), Console(stderr=True)
    with Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.completed}/{task.total} refits"),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("backtest", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = backtest_frame(frame, target, list(frame.columns.drop(target)), test_hours, refit_every, step)
    console.print(report.render())
    data = report.as_dict()
    base = data["baselines"]
    f = lambda v, spec=".4g": "-" if v is None else format(v, spec)
    typer.echo(f"artq mean MAE {f(data['mean_mae'])}; last value {f(base['last_value']['mean_mae'])}; "
               f"seasonal-naive-24 {f(base['seasonal_naive_24']['mean_mae'])}; interval coverage "
               f"{f(data['coverage'], '.1%')} (nominal {data['coverage_nominal']:.0%}).")
    typer.echo("inputs used: " + (", ".join(data["inputs_used"]) or "none (the target's own history only)"))
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2))
        typer.echo(f"JSON report written to {json_out}")


def register(app: typer.Typer) -> None:
    app.command("backtest", help=HELP)(backtest)
