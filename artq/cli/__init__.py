"""The ``artq`` command line: a thin layer over library functions.

Each command group lives in its own module with a ``register(app)`` function. Every user mistake
becomes one line on stderr and exit code 2, never a traceback: an :class:`artq.errors.ArtqError`
from the library, and every argument-parsing error (unknown command or option, a bad number, a
value out of range) from click. Typer >= 0.29 bundles its own copy of click (``typer._click``),
whose exceptions are not click's: both are handled.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from artq.errors import ArtqError

app = typer.Typer(
    name="artq",
    help="Forecast the next 6 hours of a service's Average Response Time (ART).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},  # `-h` shows help, like `--help`
)

COMMAND_MODULES = ("core", "apps", "simulator", "backtest", "models", "dashboard", "ops", "serve")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("artq")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"artq {version()}")
        raise typer.Exit(0)


@app.callback()
def root(
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Forecast the next 6 hours of a service's Average Response Time (ART)."""


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"artq.cli.{name}").register(app)


_register_all()


def _click_exceptions() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Exit, Abort) classes of click and of typer's vendored click, where present."""
    import click

    base: list[type] = [click.ClickException]
    exits: list[type] = [click.exceptions.Exit, typer.Exit]
    aborts: list[type] = [click.exceptions.Abort, typer.Abort]
    try:
        from typer import _click as vendored
        from typer import exceptions as typer_exceptions

        base.append(typer_exceptions.TyperException)
        exits.append(vendored.exceptions.Exit)
        aborts.append(vendored.exceptions.Abort)
    except (ImportError, AttributeError):  # typer < 0.29 uses click itself
        pass
    return tuple(base), tuple(exits), tuple(aborts)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _usage_message(exc: Exception) -> str:
    """The click error as one line, with the help command that shows how to fix it."""
    message = one_line(exc.format_message())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None and getattr(ctx, "command_path", None) else ""
    return f"artq: error: {message}{hint}"


def main(argv: list[str] | None = None) -> None:
    clicks, exits, aborts = _click_exceptions()
    try:
        code = app(args=argv, prog_name="artq", standalone_mode=False)
    except ArtqError as exc:
        typer.secho(f"artq: error: {one_line(str(exc))}", err=True, fg="red")
        sys.exit(2)
    except exits as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except aborts + (KeyboardInterrupt,):
        typer.echo("artq: aborted", err=True)
        sys.exit(130)
    except clicks as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `artq`: the help is the answer
            typer.echo(exc.format_message())  # type: ignore[attr-defined]
            sys.exit(0)
        typer.secho(_usage_message(exc), err=True, fg="red")
        sys.exit(2)
    # without standalone mode, click returns the code of `typer.Exit(n)` (and 130 for Ctrl-C)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        if code == 130:
            typer.echo("artq: aborted", err=True)
        sys.exit(code)
