"""``artq backtest``: rolling-origin backtest of artq against seasonal-naive baselines on a CSV."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from artq.errors import InputError

HELP = (
    "Backtest the six horizon models on any hourly CSV: at every test hour t, forecast t+1..t+6 "
    "from data up to t only, refitting on the stated cadence, and compare with seasonal naive "
    "24 h and 168 h (MAE, RMSE, MASE, interval coverage, spike precision/recall).\n\n"
    "Example: artq backtest --csv latency_1h.csv --target latency_mean --exog auto "
    "--test-hours 168 --refit-every 24 --json report.json"
)


def backtest(
    csv: Path = typer.Option(..., "--csv", help="Hourly CSV with a `timestamp` column (ISO 8601, UTC)."),
    target: str = typer.Option(..., "--target", help="Column to forecast."),
    exog: str = typer.Option("auto", "--exog", help="Input columns: auto (all other numeric columns), none, or COL,COL."),
    test_hours: int = typer.Option(168, "--test-hours", help="Number of forecast origins at the end of the file."),
    refit_every: int = typer.Option(24, "--refit-every", help="Refit the six models every this many hours."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report as JSON to this file."),
) -> None:
    """Rolling-origin backtest (see HELP)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from artq.forecasting.backtest import backtest_frame, load_csv

    if test_hours < 1:
        raise InputError(f"--test-hours must be at least 1. Got {test_hours}.")
    if refit_every < 1:
        raise InputError(f"--refit-every must be at least 1. Got {refit_every}.")
    frame = load_csv(csv, target, exog)
    console = Console()
    with Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.completed}/{task.total} refits"),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("backtest", total=None)

        def step(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        report = backtest_frame(frame, target, list(frame.columns.drop(target)), test_hours, refit_every, step)
    console.print(report.render())
    data = report.as_dict()
    typer.echo(f"artq mean MAE {data['mean_mae']:.4g}; seasonal-naive-24 {data['baselines']['seasonal_naive_24']['mean_mae']:.4g}; "
               f"interval coverage {data['coverage']:.1%} (nominal {data['coverage_nominal']:.0%}).")
    if json_out is not None:
        json_out.write_text(json.dumps(data, indent=2))
        typer.echo(f"JSON report written to {json_out}")


def register(app: typer.Typer) -> None:
    app.command("backtest", help=HELP)(backtest)
