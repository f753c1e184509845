"""Storage: typed SQLAlchemy 2 models, sessions, idempotent writes, Alembic migrations."""

from artq.storage.db import Database, migrate, open_database

__all__ = ["Database", "migrate", "open_database"]
