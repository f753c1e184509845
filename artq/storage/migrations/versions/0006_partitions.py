"""weekly RANGE partitions of observations, forecasts and dashboard_forecast_actual (MariaDB only)

A year of 1,000 applications is ~420 million observations; retention then drops whole weeks
(artq/storage/retention.py) instead of deleting rows. MariaDB requires the partition column in
every unique key, so each primary key becomes (id, <time column>); the unique keys already
hold it. The existing indexes already match every hot query (see bench/storage/PLANS.md).
SQLite, the embedded default, is left as it is.

On a populated MariaDB this rebuilds the three tables (a copy: plan minutes per 10 million
rows and free space for one more copy of the largest table).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

from artq.storage.retention import AHEAD_DAYS, PARTITIONED, partition_ddl

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

MAX_WEEKS_BACK = 530  # older rows share the first partition (MariaDB allows 8192 partitions)


def _mariadb() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if not _mariadb():
        return
    conn = op.get_bind()
    today = datetime.now(UTC).date()
    for table, column in PARTITIONED.items():
        oldest = conn.scalar(sa.text(f"SELECT MIN(`{column}`) FROM `{table}`"))
        first = max(oldest.date() if oldest else today, today - timedelta(weeks=MAX_WEEKS_BACK))
        op.execute(f"ALTER TABLE `{table}` DROP PRIMARY KEY, ADD PRIMARY KEY (`id`, `{column}`) "
                   + partition_ddl(column, first, today + timedelta(days=AHEAD_DAYS)))


def downgrade() -> None:
    if not _mariadb():
        return
    for table in PARTITIONED:
        op.execute(f"ALTER TABLE `{table}` REMOVE PARTITIONING")
        op.execute(f"ALTER TABLE `{table}` DROP PRIMARY KEY, ADD PRIMARY KEY (`id`)")

