"""``artq models``: list registered versions, promote or roll back, check drift."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console()
models_app = typer.Typer(help="Registered model versions: list, promote, roll back, check drift.", no_args_is_help=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="Path to artq.yml.")]
AppOpt = Annotated[str, typer.Option("--app", "-a", help="Application name (default: the first configured).")]


def _ctx(config, app):
    from artq.config import load_settings

    settings = load_settings(config)
    return settings, (app or settings.applications[0].name)


@models_app.command("list")
def list_versions(app: AppOpt = "", config: ConfigOpt = None) -> None:
    """List an application's model versions: validation metrics, inputs, what each uses, and why each was or was not promoted.

    "uses": how many horizons a model forecasts, and how many a naive forecast (the last value,
    the same hour yesterday or last week, or a blend); after a level shift, since when the level
    is new (in its first week only the naive forecasts compete).

    A version whose files no longer match the checksums recorded at registration is marked
    CORRUPT and is never loaded.

    Example: artq models list --app ABP
    """
    from rich.text import Text

    from artq.errors import ModelError
    from artq.forecasting import registry
    from artq.pipeline import applications, champions
    from artq.storage import open_database

    settings, name = _ctx(config, app)
    db = open_database(settings.database_url)
    try:
        with db.session() as s:
            current = champions.champion(s, name)
            rows = champions.versions(s, name)
            if not rows and name not in {a.name for a in settings.applications}:
                applications.get(s, name)  # a typo: one line naming the closest known application
            detached = [(r.version, r.created_at, dict(r.metrics or {}), r.reason, dict(r.sha256 or {})) for r in rows]
    finally:
        db.dispose()
    table = Table(title=f"{name}: model versions (champion: {current or 'none'}; times UTC)", expand=True)
    for col in ("version", "created", "MAE", "MASE", "inputs", "uses", "files", "why"):
        table.add_column(col, overflow="fold", ratio={"why": 4, "uses": 2}.get(col))
    for version, created, m, reason, sha in detached:
        try:
            path = registry.version_dir(settings.models_dir, name, version)
            registry.verify(path, version, sha)
            inputs = str(len(registry.read_metadata(path).get("exog") or []))
            files = "ok"
        except ModelError as exc:
            inputs, files = "?", f"CORRUPT: {exc}"
        marker = " *" if version == current else ""
        table.add_row(Text(version + marker), f"{created:%m-%d %H:%M}", _num(m.get("mean_mae")),
                      _num(m.get("mean_mase")), inputs, Text(_forecasts_with(m)), Text(files), Text(reason or ""))
    console.print(table)
    console.print("* = champion (serves the forecasts); `artq models promote VERSION` changes it")


@models_app.command("promote")
def promote(version: Annotated[str, typer.Argument(help="Version to make champion, e.g. v0003.")], app: AppOpt = "",
            config: ConfigOpt = None) -> None:
    """Make a version the champion (its files are checked first; also the way to roll back).

    Example: artq models promote v0002 --app ABP
    """
    _set_champion(config, app, version, rollback=False)


@models_app.command("rollback")
def rollback(version: Annotated[str, typer.Argument(help="Earlier version to return to, e.g. v0002.")], app: AppOpt = "",
             config: ConfigOpt = None) -> None:
    """Roll back to a named earlier version: it becomes the champion at once.

    Example: artq models rollback v0002 --app ABP
    """
    _set_champion(config, app, version, rollback=True)


def _set_champion(config, app, version: str, rollback: bool) -> None:
    from artq.pipeline import champions
    from artq.storage import open_database

    settings, name = _ctx(config, app)
    db = open_database(settings.database_url)
    try:
        with db.session() as s:
            (champions.rollback if rollback else champions.promote)(s, settings.models_dir, name, version)
    finally:
        db.dispose()
    console.print(f"{name}: {version} is now the champion; the next cycle uses it")


@models_app.command("drift")
def drift(app: AppOpt = "", retrain: Annotated[bool, typer.Option("--retrain", help="Train now if drift is found.")] = False,
          config: ConfigOpt = None) -> None:
    """Check whether recent errors or inputs moved away from the champion's training period.

    Example: artq models drift --app ABP --retrain
    """
    from artq.pipeline import Runtime, train_step
    from artq.pipeline.drift import drift_step

    settings, name = _ctx(config, app)
    rt = Runtime(settings)
    try:
        out = drift_step(rt, name)
        if not out["drifted"]:
            console.print(f"{name}: no drift for {out['model_version']}")
            return
        for reason in out["reasons"]:
            console.print(f"drift: {reason}")
        if retrain:
            trained = train_step(rt, name)
            console.print(f"retrained: {trained['version']} ({trained['reason']})")
    finally:
        rt.close()


def _forecasts_with(metrics: dict) -> str:
    """How many horizons a version forecasts with a model (the rest with a naive forecast), and
    the level regime it was trained on, if a recent level shift started one."""
    choices = [str(h.get("choice", "")) for h in (metrics.get("horizons") or {}).values()]
    models = sum("model" in c for c in choices)
    parts = [f"{n} {kind}" for n, kind in ((models, "model"), (len(choices) - models, "naive")) if n]
    text = ", ".join(parts) if choices else "?"
    regime = metrics.get("regime")
    if regime:
        text += f"; new level since {str(regime.get('start', '?'))[5:16].replace('T', ' ')}"
        if regime.get("models_wait"):
            text += " (naive for its first week)"
    return text


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
