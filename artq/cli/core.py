"""Core commands: init-db, backfill, train, run-cycle, demo, status."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from artq.config import Settings, load_settings
from artq.errors import InputError
from artq.redaction import mask_url
from artq.timeutil import last_complete_hour, parse_hour, utcnow

console = Console()
err_console = Console(stderr=True, highlight=False)

# bounds of the CLI numbers: a typo is refused at once, not after minutes of work (or an overflow)
MAX_DAYS = 3650
MAX_TIMEOUT_S = 86400.0

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Path to artq.yml (default: $ARTQ_CONFIG, ./artq.yml, or the embedded defaults).")]
AppOpt = Annotated[str, typer.Option("--app", "-a", help="Application name as configured (default: the first one).")]


def _settings(config: Path | None) -> Settings:
    return load_settings(config)


def _app_name(settings: Settings, app: str | None) -> str:
    """The named application (checked against the applications table where it is used), or the config's first."""
    return app or settings.applications[0].name


def _runtime(settings: Settings):
    from artq.pipeline import Runtime

    return Runtime(settings)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=False)


def init_db(config: ConfigOpt = None) -> None:
    """Create or upgrade the database schema (Alembic migrations shipped with artq).

    Example: artq init-db --config artq.yml
    """
    from artq.storage import migrate

    settings = _settings(config)
    rev = migrate(settings.database_url)
    console.print(f"database schema at revision {rev}: {mask_url(settings.database_url)}")


def backfill(
    app: AppOpt = "",
    days: Annotated[Optional[int], typer.Option("--days", min=1, max=MAX_DAYS, help="History to fetch, counted back from the last complete hour.")] = None,
    start: Annotated[Optional[str], typer.Option("--start", help="First hour to fetch (ISO 8601, UTC), e.g. 2026-11-01T00:00Z.")] = None,
    end: Annotated[Optional[str], typer.Option("--end", help="End hour, exclusive (default: the current hour).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Fetch history from the source into the database, in chunks, replacing what is there.

    Example: artq backfill --app ABP --days 30
    """
    from artq.pipeline.ingest import backfill as run_backfill
    from artq.storage import migrate

    settings = _settings(config)
    name = _app_name(settings, app)
    if days is None and start is None:
        raise InputError("give `--days N` or `--start HOUR` (with an optional `--end HOUR`).")
    if days is not None and start is not None:
        raise InputError("give either `--days` or `--start`, not both.")
    now_end = last_complete_hour() + timedelta(hours=1)
    stop = parse_hour(end, name="end") if end else now_end
    if stop > now_end:
        raise InputError(f"`--end` {stop:%Y-%m-%dT%H:00Z} is in the future; the last hour with data ends at {now_end:%Y-%m-%dT%H:00Z}.")
    first = parse_hour(start, name="start") if start else stop - timedelta(days=days or 0)
    if first >= stop:
        raise InputError(f"`--start` must be before `--end` ({stop:%Y-%m-%dT%H:00Z}). Got {first:%Y-%m-%dT%H:00Z}.")
    if stop - first > timedelta(days=MAX_DAYS):
        raise InputError(f"`--start` is more than {MAX_DAYS} days before `--end`; backfill at most {MAX_DAYS} days at a time.")
    migrate(settings.database_url)
    rt = _runtime(settings)
    try:
        with _progress() as bar:
            task = bar.add_task(f"backfill {name}", total=max(int((stop - first).total_seconds() // 3600), 1))
            summary = run_backfill(rt, rt.application(name), first, stop, progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        rt.close()
    console.print(
        f"stored {summary.stored} hourly values for {name} from {first:%Y-%m-%d %H:00} to {stop:%Y-%m-%d %H:00} UTC "
        f"({summary.requests} requests); {summary.missing} series-hours had no data and will be asked for again"
    )


def train(
    app: AppOpt = "",
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Tune hyper-parameters (time-ordered validation) before fitting.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Train the six horizon models on stored history and register a model version.

    Example: artq train --app ABP --tune
    """
    from artq.pipeline import train_step

    settings = _settings(config)
    name = _app_name(settings, app)
    rt = _runtime(settings)
    try:
        started = time.perf_counter()
        out = train_step(rt, name, tune=tune)
    finally:
        rt.close()
    verdict = "promoted to champion" if out["promoted"] else "kept as challenger"
    console.print(f"trained {name} version {out['version']} in {time.perf_counter() - started:.1f} s: {verdict} ({out['reason']})")


def run_cycle(
    app: AppOpt = "",
    origin: Annotated[Optional[str], typer.Option("--origin", help="Forecast origin hour (ISO 8601, UTC); default: the last complete hour.")] = None,
    celery: Annotated[bool, typer.Option("--celery", help="Send the canvas to the broker and wait for the chord (needs workers).")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=1, max=MAX_TIMEOUT_S, help="Seconds to wait for the cycle.")] = 600,
    config: ConfigOpt = None,
) -> None:
    """Run one hourly cycle: fetch, six horizon forecasts, dashboard refresh.

    Exits 0 when all six horizons were forecast, 1 when any failed (the failed horizons and
    their reasons are printed on stderr), 2 for a mistake in the command.

    Example: artq run-cycle --app ABP --origin 2026-11-26T08:00Z --celery
    """
    settings = _settings(config)
    name = _app_name(settings, app)
    t0 = check_origin(parse_hour(origin, name="origin")) if origin else last_complete_hour()
    out = _cycle(settings, name, t0, celery, timeout, trigger="cli")
    _print_forecasts(settings, name, t0, out)
    _exit_on_failure(out)


def check_origin(t0):
    """An origin must be a complete hour: a future one has no data and would only record gaps."""
    last = last_complete_hour()
    if t0 > last:
        raise InputError(f"`--origin` {t0:%Y-%m-%dT%H:00Z} is in the future; the last complete hour is "
                         f"{last:%Y-%m-%dT%H:00Z}. Leave `--origin` out to forecast from it.")
    return t0


def _exit_on_failure(out: dict) -> None:
    """Exit 1, naming the failed horizons, unless the cycle succeeded."""
    status = out.get("status")
    if status == "succeeded":
        return
    failed = out.get("failed") or {}
    if failed:  # some horizons failed: name each with its reason
        reasons = "; ".join(f"h{h}: {why}" for h, why in sorted(failed.items(), key=lambda kv: int(kv[0])))
        line = f"horizons {', '.join(sorted(failed, key=int))} failed: {reasons}"
    else:  # a step before the horizons (fetch, loading the model) failed: all six with one reason
        line = f"no horizon forecast: {out.get('error') or 'no reason recorded'}"
    err_console.print(Text(f"artq: cycle {status}: {line}"), soft_wrap=True)
    raise typer.Exit(1)


def _waiting_line(message: str) -> None:
    err_console.print(Text(f"  … {message}"), soft_wrap=True)


def _cycle(settings: Settings, name: str, t0, use_broker: bool, timeout: float, trigger: str) -> dict:
    import inspect

    from workers.canvas import run_cycle as run

    extra = {}
    if "progress" in inspect.signature(run).parameters:  # the waiting lines arrive with the batched cycle
        extra["progress"] = _waiting_line
    rt = _runtime(settings)
    try:
        return run(rt, name, t0, use_broker=use_broker, trigger=trigger, timeout_s=timeout, **extra)
    finally:
        rt.close()


def _print_forecasts(settings: Settings, name: str, t0, out: dict) -> None:
    from artq.storage import open_database
    from artq.storage import repository as repo

    db = open_database(settings.database_url)
    try:
        with db.session() as s:
            rows = repo.forecasts_for(s, name, t0)
            actual = repo.actuals(s, name, [t0])
    finally:
        db.dispose()
    last = actual.get(t0)
    table = Table(title=f"{name}: ART forecast, origin {t0:%Y-%m-%d %H:00} UTC",
                  caption=f"last actual (hour {t0:%H:00}): {last:.0f} ms" if last is not None else "no actual stored for the origin hour")
    for col in ("horizon", "hour (UTC)", "forecast ms", "80% interval", "model"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for f in rows:
        interval = f"{f.lower:.0f} – {f.upper:.0f}" if f.lower is not None else "-"
        table.add_row(f"+{f.horizon} h", f"{f.target_hour:%Y-%m-%d %H:00}", f"{f.value:.0f}", interval, f.model_version)
    console.print(table)
    console.print(Text(f"cycle {out.get('status')}: {len(out.get('horizons_ok', []))} of 6 horizons stored"))


def demo(
    days: Annotated[int, typer.Option("--days", min=15, max=365, help="History to backfill from the simulator.")] = 60,
    config: ConfigOpt = None,
) -> None:
    """Run everything with no servers: simulator on loopback, backfill, train, one cycle, forecasts.

    Example: artq demo
    """
    from artq.pipeline import train_step
    from artq.pipeline.ingest import backfill as run_backfill
    from artq.storage import migrate
    from artq.storage import repository as repo

    settings = _settings(config)
    if not settings.source.url:
        settings.source.simulate = True  # the demo is the one place that asks for the simulator by default
    name = settings.applications[0].name
    started = time.perf_counter()
    migrate(settings.database_url)
    t0 = last_complete_hour()
    rt = _runtime(settings)
    try:
        console.print(Text(f"artq demo: application {name}, source {'simulator' if not settings.source.url else mask_url(settings.source.url)}"))
        with rt.db.session() as s:
            have = repo.latest_observed_hour(s, name)
        first = t0 + timedelta(hours=1) - timedelta(days=days)
        if have is None or have < first:
            with _progress() as bar:
                task = bar.add_task("backfill", total=days * 24)
                run_backfill(rt, rt.application(name), first, t0 + timedelta(hours=1), progress=lambda d, t: bar.update(task, completed=d, total=t))
        if not rt.champions([name]):
            with console.status("training six horizon models"):
                out = train_step(rt, name, tune=False, until=t0)
            console.print(f"trained version {out['version']}")
    finally:
        rt.close()
    out = _cycle(settings, name, t0, use_broker=False, timeout=600, trigger="demo")
    _print_forecasts(settings, name, t0, out)
    console.print(Text(f"data: {mask_url(settings.database_url)}; models: {settings.models_dir}; took {time.perf_counter() - started:.1f} s (at {utcnow():%H:%M} UTC)"))
    console.print(Text("next: `artq serve --simulate` shows the dashboard and runs the cycle every hour on the simulator (Ctrl-C stops)"))
    _exit_on_failure(out)


def status(app: AppOpt = "", limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10, config: ConfigOpt = None) -> None:
    """Show the last cycles from the run table: status, step timings, error.

    Step timings are fetch / predict / refresh in seconds; errors follow the table in full.

    Example: artq status --app ABP --limit 24
    """
    from artq.storage import open_database
    from artq.storage import repository as repo

    settings = _settings(config)
    db = open_database(settings.database_url)
    try:
        with db.session() as s:
            runs = repo.recent_runs(s, app or None, limit)
    finally:
        db.dispose()
    print_runs(runs)


def print_runs(runs) -> None:
    """The run table, readable at 80 columns; stored text is shown as text, never as rich markup."""
    table = Table(title="recent cycles (UTC)", title_justify="left", pad_edge=False, padding=(0, 1))
    table.add_column("app", overflow="fold", max_width=16)
    table.add_column("origin", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("trigger", overflow="fold", max_width=10)
    table.add_column("try", justify="right")
    table.add_column("fetch/pred/refr s", no_wrap=True)
    errors = []
    for r in runs:
        note = ""
        if r.error:
            errors.append((r, r.error))
            note = f" [{len(errors)}]"
        table.add_row(Text(r.application), f"{r.origin:%m-%d %H:00}", Text(r.status + note), Text(r.trigger), str(r.attempts),
                      "/".join(_fmt(v) for v in (r.fetch_s, r.predict_s, r.refresh_s)))
    console.print(table)
    for n, (r, error) in enumerate(errors, start=1):
        console.print(Text(f"[{n}] {r.application} {r.origin:%Y-%m-%d %H:00}: {error[:600]}"))


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def register(app: typer.Typer) -> None:
    app.command("init-db")(init_db)
    app.command("backfill")(backfill)
    app.command("train")(train)
    app.command("run-cycle")(run_cycle)
    app.command("demo")(demo)
    app.command("status")(status)
