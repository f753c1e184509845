"""``artq simulator``: serve the AppDynamics Controller API from the seeded simulated world."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def simulator(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="TCP port (0: any free port).")] = 8090,
    host: Annotated[str, typer.Option("--host", help="Address to bind; keep loopback unless others must reach it.")] = "127.0.0.1",
    seed: Annotated[Optional[int], typer.Option("--seed", min=0, max=2**32 - 1, help="World seed (default: simulator.seed in the config).")] = None,
    fleet: Annotated[int, typer.Option("--fleet", min=0, max=100_000, help="Also serve N generated applications APP0001.. (fleet tests).")] = 0,
    faults: Annotated[str, typer.Option("--faults", help="Inject faults, e.g. 'error_rate=0.1;latency_s=0.5' (see the simulator README).")] = "",
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="Path to artq.yml.")] = None,
) -> None:
    """Serve the simulated AppDynamics Controller over HTTP until Ctrl-C.

    Clients authenticate with the configured client id and secret (OAuth) or, when
    ARTQ_SOURCE_USERNAME / ARTQ_SOURCE_PASSWORD are set, HTTP Basic.

    Example: artq simulator --port 8090 --seed 7
    """
    from artq.config import load_settings
    from artq.sources.simulator import Faults, SimulatorConfig, fleet_apps, serve

    settings = load_settings(config)
    if seed is not None:
        settings.simulator.seed = seed
    cfg = SimulatorConfig.from_settings(settings)
    if faults:
        cfg.faults = Faults.parse(faults)
    if fleet:
        cfg.applications = list(cfg.applications) + fleet_apps(fleet)
    typer.echo(f"simulated AppDynamics controller on http://{host}:{port} (seed {cfg.seed}, {len(cfg.applications)} applications); Ctrl-C stops")
    serve(cfg, host, port)


def register(app: typer.Typer) -> None:
    app.command("simulator")(simulator)
