"""``artq dashboard``: serve the web dashboard (one process, reads the database)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from artq.stopping import stop_on_interrupt_or_term


def dashboard(
    host: Annotated[str, typer.Option("--host", help="Address to bind; keep loopback unless analysts reach it over the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free port).")] = 8050,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to artq.yml (default: $ARTQ_CONFIG, ./artq.yml, or the embedded defaults).")] = None,
) -> None:
    """Serve the dashboard page and its JSON API until Ctrl-C.

    Per application: recent actual ART with the next six hours of forecasts and their
    intervals, percentile bands and the alert threshold, drivers, accuracy per horizon,
    alerts and the last cycles. The JSON is at /api/applications and /api/app/<name>.
    All times are UTC. Set `dashboard.auth` (or ARTQ_DASHBOARD_USERNAME/_PASSWORD, ARTQ_DASHBOARD_TOKEN)
    to require a login.

    Example: artq dashboard --port 8050
    """
    from artq.config import load_settings
    from artq.dashboard.alerts import rule_for
    from artq.dashboard.server import access_note, make_server

    settings = load_settings(config)
    for app in settings.applications:
        rule_for(settings, app.name)  # a bad alert override fails here, not on the first page view
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(settings, host, port)
    typer.echo(f"artq dashboard on {server.url} ({len(settings.applications)} application(s)); {access_note(settings, host)}; Ctrl-C stops")
    stop_on_interrupt_or_term()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.db.dispose()


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)
