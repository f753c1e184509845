"""Engines, sessions, migrations and the idempotent write helper."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from artq.errors import ConfigError, StorageError
from artq.redaction import mask_url, redact, url_password

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine tuned per backend; SQLite files get WAL and a busy timeout for concurrent readers."""
    check_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # pre_ping: a worker outlives MariaDB restarts; recycle below wait_timeout
    return create_engine(parsed, pool_pre_ping=True, pool_recycle=1800, pool_size=5, max_overflow=5)


def check_url(url: str) -> None:
    """Refuse a malformed database URL with a message that never shows its password."""
    password = url_password(url) or ""
    if "@" in password:  # the driver would take the tail for the host and print it in its error
        raise ConfigError(
            f"the password in `database_url` ({mask_url(url)}) contains an unescaped '@'. "
            "Percent-encode it as %40 (and ':' as %3A, '/' as %2F)."
        )
    try:
        make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise ConfigError(
            f"`database_url` is not a valid SQLAlchemy URL: {mask_url(url)!r}. "
            "Expected the form mysql+mysqldb://USER:PASSWORD@HOST/DATABASE (percent-encode '@', ':' and '/' "
            "in the password)."
        ) from None


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(url: str, revision: str = "head") -> str:
    """Bring the schema to ``revision`` with Alembic; returns the revision now applied."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            return MigrationContext.configure(conn).get_current_revision() or ""
    except DBAPIError as exc:
        raise StorageError(f"cannot reach the database to migrate it: {_short(exc, url)}") from None
    finally:
        engine.dispose()


def _short(exc: Exception, url: str) -> str:
    """The driver's first line, without the URL's password (drivers may echo parts of the URL)."""
    text = str(getattr(exc, "orig", exc)) or type(exc).__name__
    return redact(text.splitlines()[0][:300], [url_password(url) or ""])


class Database:
    """One engine and its session factory. Pass it around; open sessions with :meth:`session`."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({mask_url(self.url)!r})"

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commits on success, rolls back on any error."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def check_schema(self) -> None:
        """Fail with a how-to-fix message if the database was never migrated."""
        try:
            tables = set(inspect(self.engine).get_table_names())
        except DBAPIError as exc:
            raise StorageError(f"cannot reach the database: {_short(exc, self.url)}") from None
        if "pipeline_runs" not in tables:
            raise StorageError(
                f"the database at {make_url(self.url).render_as_string(hide_password=True)} has no artq "
                "tables. Run `artq init-db` first."
            )

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str, *, check: bool = True) -> Database:
    db = Database(url)
    if check:
        db.check_schema()
    return db


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    update: Iterable[str] | None = None,
    chunk: int = 500,
) -> int:
    """Insert ``rows``; where a unique ``keys`` tuple exists already, overwrite ``update`` columns.

    One statement per chunk, so a re-run replaces its own rows and never duplicates them.
    """
    if not rows:
        return 0
    keys = list(keys)
    cols = list(rows[0].keys())
    update = [c for c in (update if update is not None else cols) if c not in keys]
    dialect = session.get_bind().dialect.name
    for i in range(0, len(rows), chunk):
        part = list(rows[i : i + chunk])
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(table).values(part)
            stmt = stmt.on_conflict_do_update(
                index_elements=keys, set_={c: stmt.excluded[c] for c in update}
            )
        elif dialect in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            stmt = mysql_insert(table).values(part)
            stmt = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in update})
        elif dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(table).values(part)
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
        else:  # pragma: no cover - guarded by config validation
            raise StorageError(f"upsert is not implemented for the {dialect!r} database")
        session.execute(stmt)
    return len(rows)
