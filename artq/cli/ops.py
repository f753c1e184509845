"""Operations commands: reconcile stuck or missed cycles, look at the worker fleet."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from artq.cli.core import ConfigOpt, _runtime, _settings, console
from artq.errors import ConfigError


def reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Finish or re-run stuck cycles, open freshness alerts, start cycles missed while beat was down.

    Beat runs the same check every `operations.reconcile_every_s` seconds; this runs it now. With a
    broker configured, re-runs go to the workers; without one, they run in this process.

    Example: artq reconcile --config artq.yml
    """
    from artq.pipeline.reconcile import reconcile as run_reconcile
    from workers.canvas import broker_restart, in_process_restart
    from workers.factory import create_app

    settings = _settings(config)
    rt = _runtime(settings)
    app = None if settings.embedded else create_app(settings)
    try:
        report = run_reconcile(rt, restart=in_process_restart(rt) if app is None else broker_restart(app, rt))
    finally:
        rt.close()
        if app is not None:
            app.close()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    fresh = report["freshness"]
    for key in ("completed", "restarted", "gave_up", "started", "errors"):
        console.print(Text(f"{key.replace('_', ' ')}: {len(report[key])}" + (f"  {', '.join(report[key][:10])}" if report[key] else "")))
    console.print(f"freshness alerts opened: {len(fresh['opened'])}, resolved: {len(fresh['resolved'])}")


def workers(
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=60, help="Seconds to wait for the workers' replies.")] = 2.0,
    config: ConfigOpt = None,
) -> None:
    """List the live workers: the queues each consumes, tasks running and reserved.

    Example: artq workers --config artq.yml --timeout 5
    """
    from workers.factory import create_app

    settings = _settings(config)
    if settings.embedded:
        raise ConfigError("no broker configured (`celery.broker_url` / ARTQ_BROKER_URL): the cycle runs in-process, "
                          "there are no workers to list.")
    app = create_app(settings)
    # One broadcast waits the whole timeout (the number of workers is unknown); the follow-up
    # questions go only to the workers that answered and return as soon as each has replied.
    queues = app.control.inspect(timeout=timeout).active_queues() or {}
    pings = sorted(queues)
    active, reserved = {}, {}
    if pings:
        known = app.control.inspect(timeout=timeout, destination=pings, limit=len(pings))
        active = known.active() or {}
        reserved = known.reserved() or {}
    if not pings:
        console.print("no worker answered; start one with `celery -A workers worker -Q fetch,predict,refresh,train`")
        raise typer.Exit(1)
    table = Table(title=f"{len(pings)} live worker(s)")
    for col in ("worker", "queues", "running", "reserved"):
        table.add_column(col)
    for name in sorted(pings):
        table.add_row(Text(name), ",".join(sorted(q["name"] for q in queues.get(name, []))),
                      ", ".join(t["name"] for t in active.get(name, [])) or "-", str(len(reserved.get(name, []))))
    console.print(table)


def retention(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Drop history older than `operations.retention_days` (whole weekly partitions on MariaDB) and add weeks ahead.

    Beat runs the same housekeeping daily at 03:50 UTC; this runs it now.

    Example: artq retention --config artq.yml
    """
    from artq.storage import open_database
    from artq.storage.retention import enforce_retention

    settings = _settings(config)
    db = open_database(settings.database_url)
    try:
        report = enforce_retention(db, settings.operations.retention_days)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    for table, r in report["tables"].items():
        console.print(Text(f"{table}: {len(r['dropped'])} partition(s) dropped, {len(r['created'])} created, "
                           f"{r['deleted_rows']} row(s) deleted, {r['partitions']} partition(s) now"))
    console.print(Text(f"kept: everything since {report['cutoff'] or 'the beginning (retention 0: keep forever)'}"))


def register(app: typer.Typer) -> None:
    app.command("reconcile")(reconcile)
    app.command("retention")(retention)
    app.command("workers")(workers)
