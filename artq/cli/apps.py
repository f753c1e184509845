"""``artq apps`` and ``artq discover``: the applications the fleet forecasts, managed in the database.

Every worker reads the applications table at each step, so a change here takes effect at the
next cycle with no restart. The config's ``applications`` are the seed: they are always listed
(with their tiers as configured), and can be paused here but removed only from the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

console = Console()
apps_app = typer.Typer(help="The applications artq forecasts: list, add, pause, resume, remove, check.",
                       no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Path to artq.yml.")]
NameArg = Annotated[str, typer.Argument(help="The application's name, exactly as the controller names it.")]


def _runtime(config: Path | None):
    from artq.config import load_settings
    from artq.pipeline import Runtime
    from artq.storage import migrate

    settings = load_settings(config)
    migrate(settings.database_url)
    return Runtime(settings)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


@apps_app.command("list")
def list_apps(active_only: Annotated[bool, typer.Option("--active-only", help="Leave out paused applications.")] = False,
              config: ConfigOpt = None) -> None:
    """List the applications, their tiers, status and champion model.

    Example: artq apps list
    """
    from artq.pipeline import applications as apps
    from artq.pipeline.champions import champions

    rt = _runtime(config)
    try:
        rt.applications()  # seeds the config's applications
        with rt.db.session() as s:
            rows = [(r.name, r.status, list(r.tiers or []), r.metrics, r.added_by) for r in apps.listed(s, include_paused=not active_only)]
            models = champions(s, [r[0] for r in rows])
    finally:
        rt.close()
    table = Table(title=f"{len(rows)} application(s)", expand=True)
    for col in ("application", "status", "tiers", "metrics", "added by", "model"):
        table.add_column(col, overflow="fold")
    for name, status, tiers, metrics, added_by, in rows:
        table.add_row(Text(name), status, Text(", ".join(tiers)), Text(", ".join(metrics) if metrics else "all"),
                      added_by, models.get(name, "-"))
    console.print(table)


@apps_app.command("add")
def add(name: NameArg,
        tiers: Annotated[str, typer.Option("--tiers", help="Its sub-servers: tier names, comma-separated.")],
        metrics: Annotated[Optional[str], typer.Option("--metrics", help="Catalog metrics to fetch, comma-separated "
                                                        "(art,cpm,epm,exceptions,slow,very_slow; default: all).")] = None,
        check: Annotated[bool, typer.Option("--check/--no-check", help="Check the tiers against the controller first.")] = True,
        config: ConfigOpt = None) -> None:
    """Add an application; it is forecast from the next cycle on (train it first: `artq train --app NAME`).

    Example: artq apps add Checkout --tiers web,orders,payments
    """
    from artq.pipeline import applications as apps

    tier_list, metric_list = _split(tiers) or [], _split(metrics)
    apps.check_metrics(metric_list)
    rt = _runtime(config)
    try:
        if check:
            _check_on_controller(rt, name, tier_list)
        with rt.db.session() as s:
            apps.add(s, name, tier_list, metric_list, added_by="cli")
    finally:
        rt.close()
    console.print(Text(f"added {name} with {len(tier_list)} tier(s); next: `artq backfill --app {name} --days 30` "
                       f"and `artq train --app {name}`"))


def _check_on_controller(rt, name: str, tiers: list[str]) -> None:
    from artq.pipeline import applications as apps

    rt.settings.require_source()
    known = [a["name"] for a in rt.client.applications()]
    if name not in known:
        from artq.errors import ConfigError

        raise ConfigError(f"the controller has no application {name!r}{apps.did_you_mean(name, known)}; "
                          "see `artq discover`.")
    apps.check_tiers(name, tiers, [t["name"] for t in rt.client.tiers(name)])


def _set(name: str, config: Path | None, status) -> None:
    from artq.pipeline import applications as apps

    rt = _runtime(config)
    try:
        rt.applications()
        with rt.db.session() as s:
            apps.set_status(s, name, status)
    finally:
        rt.close()


@apps_app.command("pause")
def pause(name: NameArg, config: ConfigOpt = None) -> None:
    """Stop forecasting an application from the next cycle on; its history and models stay.

    Example: artq apps pause Checkout
    """
    from artq.pipeline.applications import AppStatus

    _set(name, config, AppStatus.PAUSED)
    console.print(Text(f"{name} paused: the next cycle leaves it out (`artq apps resume {name}` brings it back)"))


@apps_app.command("resume")
def resume(name: NameArg, config: ConfigOpt = None) -> None:
    """Forecast a paused application again from the next cycle on.

    Example: artq apps resume Checkout
    """
    from artq.pipeline.applications import AppStatus

    _set(name, config, AppStatus.ACTIVE)
    console.print(Text(f"{name} resumed: the next cycle forecasts it"))


@apps_app.command("remove")
def remove(name: NameArg, config: ConfigOpt = None) -> None:
    """Stop forecasting an application and forget it (stored history and model files stay).

    Example: artq apps remove Checkout
    """
    from artq.pipeline import applications as apps

    rt = _runtime(config)
    try:
        rt.applications()
        with rt.db.session() as s:
            apps.remove(s, rt.settings, name)
    finally:
        rt.close()
    console.print(Text(f"{name} removed"))


@apps_app.command("check")
def check(config: ConfigOpt = None) -> None:
    """Check every active application and its tiers against the controller (a typo names the closest match).

    Example: artq apps check --config artq.yml
    """
    rt = _runtime(config)
    try:
        listed = rt.applications()
        for app in listed.values():
            _check_on_controller(rt, app.name, app.tiers)
    finally:
        rt.close()
    console.print(f"{len(listed)} application(s) and their tiers found on the controller")


def discover(
    add: Annotated[Optional[list[str]], typer.Option("--add", help="Add this application (repeat for more).")] = None,
    add_all: Annotated[bool, typer.Option("--add-all", help="Add every application the controller lists.")] = False,
    config: ConfigOpt = None,
) -> None:
    """List the controller's applications with their tiers and nodes; add the chosen ones in one go.

    An added application's main server is the application itself (its overall performance) and
    its sub-servers are all its tiers, as the controller names them.

    Example: artq discover --add Checkout --add Search
    """
    from artq.pipeline import applications as apps

    rt = _runtime(config)
    try:
        rt.settings.require_source()
        on_controller = [a["name"] for a in rt.client.applications()]
        listed = rt.applications(include_paused=True)
        wanted = on_controller if add_all else list(add or [])
        for name in wanted:
            if name not in on_controller:
                from artq.errors import ConfigError

                raise ConfigError(f"the controller has no application {name!r}{apps.did_you_mean(name, on_controller)}.")
        table = Table(title=f"{len(on_controller)} application(s) on the controller", expand=True)
        for col in ("application", "tiers", "nodes", "artq"):
            table.add_column(col, overflow="fold")
        added = []
        for name in on_controller:
            tiers = [t["name"] for t in rt.client.tiers(name)]
            nodes = rt.client.nodes(name)
            state = "listed" if name in listed else "-"
            if name in wanted and name not in listed:
                with rt.db.session() as s:
                    apps.add(s, name, tiers, None, added_by="discover")
                added.append(name)
                state = "added"
            table.add_row(Text(name), Text(", ".join(tiers)), str(len(nodes)), state)
    finally:
        rt.close()
    console.print(table)
    if added:
        console.print(Text(f"added {len(added)}: {', '.join(added[:20])}; next: backfill and train them "
                           "(`artq backfill --app NAME --days 30`, `artq train --app NAME`)"))


def register(app: typer.Typer) -> None:
    app.add_typer(apps_app, name="apps")
    app.command("discover")(discover)
