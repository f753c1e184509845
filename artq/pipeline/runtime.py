"""What a step needs at run time: settings, the database, the metric source, loaded models.

One Runtime per process (a Celery app holds one for its worker processes; the CLI makes its
own). The source is the configured controller; the built-in simulator serves only when asked
for (``source.simulate``), started on loopback for the life of the process (its world is
deterministic, so every process sees the same data). With neither, the first use of the source
fails in one line naming the setting.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from artq.config import Settings
from artq.errors import ConfigError, ModelError, SourceUnavailable, StorageError
from artq.storage.db import Database

if TYPE_CHECKING:
    from artq.sources.appdynamics import AppDynamicsClient


F = TypeVar("F", bound=Callable[..., Any])

# MySQL/MariaDB client errors that mean "the connection is gone, try again later":
# 2002/2003 cannot connect, 2005 unknown host (a stopped container's name leaves Docker's DNS
# until it starts again; a typo'd host fails at `init-db` long before a cycle), 2006 server has
# gone away, 2013 lost connection during query, 2055 lost connection at the handshake,
# 1053 server shutdown in progress; 1205 lock wait timeout and 1213 deadlock also clear up on a
# retry.
TRANSIENT_DB_CODES = frozenset({1053, 1205, 1213, 2002, 2003, 2005, 2006, 2013, 2055})


class StorageUnavailable(StorageError):
    """Transient: the database connection was refused or lost. Safe to retry later."""


def is_transient(exc: BaseException | None) -> bool:
    """True for errors that a later retry can cure (source or database briefly unreachable)."""
    if isinstance(exc, (SourceUnavailable, StorageUnavailable)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        args = getattr(exc.orig, "args", ())
        if isinstance(exc, OperationalError) and args and args[0] in TRANSIENT_DB_CODES:
            return True
        return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)  # SQLite busy
    return False


def retry_safe(fn: F) -> F:
    """Re-raise a lost database connection as :class:`StorageUnavailable`, so callers can retry it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StorageError as exc:
            if not isinstance(exc, StorageUnavailable) and is_transient(exc.__context__):
                raise StorageUnavailable(str(exc)) from exc.__context__
            raise
        except DBAPIError as exc:
            if is_transient(exc):
                text = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
                raise StorageUnavailable(f"database unavailable: {text}") from exc
            raise

    return wrapper  # type: ignore[return-value]


class Runtime:
    def __init__(self, settings: Settings, database: Database | None = None):
        self.settings = settings
        self._db = database
        self._client: AppDynamicsClient | None = None
        self._simulator: Any = None
        # (application, version) -> bundle, least recently used first; ~0.5 MB each with the
        # bench's models (bench/fleet/README.md), so the bound is what caps a worker's memory
        self._models: OrderedDict[tuple[str, str], Any] = OrderedDict()
        # more than one worker's share of the fleet by default, since any worker may get any batch
        self.model_cache_size = settings.operations.model_cache_size
        self._seeded = False
        self._lock = threading.Lock()

    @property
    def db(self) -> Database:
        if self._db is None:
            db = Database(self.settings.database_url)
            try:
                db.check_schema()
            except StorageError:
                db.dispose()
                raise
            self._db = db
        return self._db

    @property
    def source_url(self) -> str:
        if self.settings.source.url:
            return self.settings.source.url.rstrip("/")
        self.settings.require_source()
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

    def applications(self, include_paused: bool = False, names: list[str] | None = None) -> dict[str, Any]:
        """``{name: ApplicationSettings}`` from the applications table, read now (never a stale view).

        ``names``: only those (a batch's step reads its own rows, not the whole fleet's).
        """
        from sqlalchemy import select

        from artq.pipeline import applications as apps
        from artq.storage.models import Application

        self._seed()
        with self.db.session() as s:
            if names is None:
                rows = apps.listed(s, include_paused=include_paused)
            else:
                rows = [r for r in s.scalars(select(Application).where(Application.name.in_(list(names))))
                        if include_paused or r.status == apps.AppStatus.ACTIVE]
            return {r.name: apps.settings_of(r) for r in rows}

    def application(self, name: str) -> Any:
        """One application's settings; a one-line ConfigError naming the closest one if unknown or paused."""
        from artq.pipeline import applications as apps

        self._seed()
        with self.db.session() as s:
            row = apps.get(s, name)
            if row.status != apps.AppStatus.ACTIVE:
                raise ConfigError(f"application {name!r} is paused; resume it with `artq apps resume {name}`.")
            return apps.settings_of(row)

    def _seed(self) -> None:
        """Once per process: the config's applications are always in the table."""
        if self._seeded:
            return
        from sqlalchemy.exc import IntegrityError

        from artq.pipeline import applications as apps

        try:
            with self.db.session() as s:
                apps.seed(s, self.settings)
        except IntegrityError:  # another process seeded the same names at the same moment: theirs stand
            pass
        self._seeded = True

    def champions(self, applications: list[str]) -> dict[str, str]:
        """``{application: champion version}`` for those that have one (one query)."""
        from artq.pipeline.champions import champions

        with self.db.session() as s:
            return champions(s, list(applications))

    def bundle(self, application: str, version: str) -> Any:
        """The model bundle of (application, version), checked against its recorded hashes, cached."""
        key = (application, version)
        if key not in self._models:
            from artq.pipeline.champions import load_version

            with self.db.session() as s:
                self._keep(key, load_version(s, self.settings.models_dir, application, version))
        self._models.move_to_end(key)
        return self._models[key]

    def preload(self, versions: dict[str, str]) -> None:
        """Load the bundles of ``{application: version}`` not cached yet, their hashes read in one query.

        A batch's steps call this first, so a cold worker pays one query per batch instead of one
        per application; a bundle that cannot be loaded is left to :meth:`bundle` to report.
        """
        from sqlalchemy import select

        from artq.errors import ArtqError
        from artq.forecasting import registry
        from artq.storage.models import ModelVersion

        missing = {(a, v) for a, v in versions.items() if (a, v) not in self._models}
        if not missing:
            return
        with self.db.session() as s:
            rows = s.execute(select(ModelVersion.application, ModelVersion.version, ModelVersion.sha256)
                             .where(ModelVersion.application.in_(sorted({a for a, _ in missing})))).all()
        for application, version, sha in rows:
            if (application, version) in missing:
                try:
                    self._keep((application, version), registry.load(self.settings.models_dir, application, version, sha))
                except ArtqError:
                    pass  # bundle() loads it again and raises the reason for this application only

    def _keep(self, key: tuple[str, str], bundle: Any) -> None:
        # One worker process per core: XGBoost's own thread pool only adds overhead to the
        # one-row predictions of a cycle (measured: 12-35 ms per call with threads, 0.4 ms without).
        for boosters in bundle.boosters_.values():
            for booster in boosters:
                booster.set_param({"nthread": 1})
        self._models[key] = bundle
        self._models.move_to_end(key)
        while len(self._models) > self.model_cache_size:  # bounded memory: the least recently used goes
            self._models.popitem(last=False)

    def champion(self, application: str) -> tuple[Any, str]:
        """The champion model bundle of ``application`` and its version."""
        version = self.champions([application]).get(application)
        if version is None:
            raise ModelError(f"no trained model for application {application!r}. Run `artq train --app {application}` first.")
        return self.bundle(application, version), version

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
