"""Configuration of the simulated controller: which applications exist, credentials, clock, faults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from artq.catalog import DEFAULT_TIERS
from artq.config import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Settings
from artq.errors import ConfigError
from artq.sources.simulator.faults import Faults


@dataclass(frozen=True)
class SimApp:
    """One simulated application: a main server fronting ``tiers`` (the sub-servers).

    The rates tune the world's event schedules; 0 switches an event kind off, which gives a
    counterfactual world that is otherwise identical (each kind draws from its own keyed RNG).
    """

    name: str
    tiers: list[str] = field(default_factory=lambda: list(DEFAULT_TIERS))
    description: str = ""
    incidents_per_week: float = 1.0
    deployments_per_week: float = 0.6  # per tier
    surges_per_day: float = 0.2
    outages_per_week: float = 0.15  # reporting gaps of 1-3 whole hours
    minute_gap_rate: float = 0.001  # share of minutes a server fails to report

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ConfigError("`SimApp.name` must not be empty.")
        if not self.tiers:
            raise ConfigError(f"`SimApp.tiers` of {self.name!r} must list at least one tier.")
        if len(set(self.tiers)) != len(self.tiers):
            raise ConfigError(f"`SimApp.tiers` of {self.name!r} repeats a tier name: {self.tiers}.")
        bad = [t for t in self.tiers if "|" in t or t == "*"]
        if bad:
            raise ConfigError(f"tier names must not contain '|' or be '*'. Got {bad[0]!r}.")


@dataclass
class SimulatorConfig:
    seed: int = 42
    applications: list[SimApp] = field(default_factory=lambda: [SimApp(name="ABP")])
    client_id: str | None = DEFAULT_CLIENT_ID  # "<api client name>@<account>"
    client_secret: str | None = DEFAULT_CLIENT_SECRET
    username: str | None = None  # Basic auth: "user" (account appended) or "user@account"
    password: str | None = None
    account: str = "customer1"
    token_ttl_s: float = 300.0
    faults: Faults = field(default_factory=Faults)
    now: Callable[[], datetime] | None = None  # injectable clock; None: real UTC time
    unknown_app_status: int = 400  # the status for an unknown application is UNCONFIRMED (spec §6)
    cache_blocks: int = 8192  # (app, hour) blocks kept in the LRU cache, ~10 KB each

    def __post_init__(self) -> None:
        if not self.applications:
            raise ConfigError("`SimulatorConfig.applications` must list at least one application.")
        names = [a.name for a in self.applications]
        if len(set(names)) != len(names):
            raise ConfigError(f"`SimulatorConfig.applications` repeats a name: {names}.")
        if self.token_ttl_s <= 0:
            raise ConfigError(f"`token_ttl_s` must be positive. Got {self.token_ttl_s}.")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> SimulatorConfig:
        """Applications, tiers, seed and credentials from artq's Settings."""
        apps = [SimApp(name=a.name, tiers=list(a.tiers)) for a in settings.applications]
        src = settings.source
        kwargs: dict[str, object] = {
            "seed": settings.simulator.seed,
            "applications": apps,
            "client_id": src.client_id,
            "client_secret": src.client_secret,
            "username": src.username,
            "password": src.password,
        }
        kwargs.update(overrides)
        return cls(**kwargs)  # type: ignore[arg-type]


def fleet_apps(n: int) -> list[SimApp]:
    """``n`` applications APP0001..APPnnnn, each with the 7 default tiers (fleet benchmarks)."""
    if n < 1:
        raise ConfigError(f"`n` must be at least 1. Got {n}.")
    return [SimApp(name=f"APP{i:04d}", tiers=list(DEFAULT_TIERS)) for i in range(1, n + 1)]
