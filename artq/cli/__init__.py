"""The ``artq`` command line: a thin layer over library functions.

Each command group lives in its own module with a ``register(app)`` function; user mistakes
(:class:`artq.errors.ArtqError`) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from artq.errors import ArtqError

app = typer.Typer(
    name="artq",
    help="Forecast the next 6 hours of a service's Average Response Time (ART).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = ("core", "simulator", "backtest", "models", "dashboard", "ops")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"artq.cli.{name}")
        except ModuleNotFoundError as exc:  # a command module not written yet
            if exc.name == f"artq.cli.{name}":
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    try:
        app(standalone_mode=False)
    except ArtqError as exc:
        typer.secho(f"artq: error: {exc}", err=True, fg="red")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("artq: aborted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
