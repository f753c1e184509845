"""What a step needs at run time: settings, the database, the metric source, loaded models.

One Runtime per process. The source is the configured controller or, in the embedded default,
the built-in simulator started on loopback for the life of the process (the simulated world is
deterministic, so every process sees the same data).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from artq.config import Settings
from artq.errors import ModelError
from artq.storage.db import Database

if TYPE_CHECKING:
    from artq.sources.appdynamics import AppDynamicsClient


class Runtime:
    def __init__(self, settings: Settings, database: Database | None = None):
        self.settings = settings
        self._db = database
        self._client: AppDynamicsClient | None = None
        self._simulator: Any = None
        self._models: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.settings.database_url)
            self._db.check_schema()
        return self._db

    @property
    def source_url(self) -> str:
        if self.settings.source.url:
            return self.settings.source.url.rstrip("/")
        with self._lock:
            if self._simulator is None:
                from artq.sources.simulator import SimulatorConfig, start_simulator

                running = start_simulator(SimulatorConfig.from_settings(self.settings), host="127.0.0.1", port=0)
                self._simulator = (running, running.__enter__())
        return self._simulator[1].url

    @property
    def client(self) -> AppDynamicsClient:
        if self._client is None:
            from artq.sources.appdynamics import AppDynamicsClient

            self._client = AppDynamicsClient.from_settings(self.settings.source, base_url=self.source_url)
        return self._client

    def champion(self, application: str) -> tuple[Any, str]:
        """The champion model bundle of ``application`` and its version (cached per version)."""
        from artq.forecasting import registry

        version = registry.champion(self.settings.models_dir, application)
        if version is None:
            raise ModelError(
                f"no trained model for application {application!r} in {self.settings.models_dir}. "
                f"Run `artq train --app {application}` first."
            )
        key = (application, version)
        if key not in self._models:
            self._models[key] = registry.load(self.settings.models_dir, application, version)
        return self._models[key], version

    def forget_models(self) -> None:
        self._models.clear()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._simulator is not None:
            self._simulator[0].__exit__(None, None, None)
            self._simulator = None
        if self._db is not None:
            self._db.dispose()
            self._db = None

    def after_fork(self) -> None:
        """Drop connections inherited from a parent process (prefork workers)."""
        if self._db is not None:
            self._db.engine.dispose(close=False)
        self._client = None
        self._simulator = None
