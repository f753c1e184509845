from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from artq.storage import migrate
from artq.storage.models import Base


def test_migrations_build_exactly_the_models(any_db_url):
    engine = sa.create_engine(any_db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    engine.dispose()
    assert diff == []


def test_migrate_twice_is_a_no_op(any_db_url):
    assert migrate(any_db_url) == migrate(any_db_url)
    engine = sa.create_engine(any_db_url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"observations", "forecasts", "model_versions", "pipeline_runs", "dashboard_latest_forecast"} <= tables
