"""A local AppDynamics Controller that speaks the REST API over real HTTP, backed by a seeded world.

    with start_simulator(SimulatorConfig(seed=42)) as sim:
        requests.get(f"{sim.url}/controller/rest/applications", auth=("artq@customer1", ...))

See README.md beside this file, and :mod:`.world` for the model.
"""

from artq.sources.simulator.config import SimApp, SimulatorConfig, fleet_apps
from artq.sources.simulator.events import Incident
from artq.sources.simulator.faults import Faults
from artq.sources.simulator.server import SimulatorServer, serve, start_simulator
from artq.sources.simulator.world import World

__all__ = [
    "Faults", "Incident", "SimApp", "SimulatorConfig", "SimulatorServer", "World", "fleet_apps",
    "serve", "start_simulator",
]
