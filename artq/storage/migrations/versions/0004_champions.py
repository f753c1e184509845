"""one champion pointer per application; model hashes and training fingerprints in the database

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

The champion used to live twice (a champion.json file beside the models and a ``champion``
status in ``model_versions``); the ``champions`` table is now the only pointer. Existing
champion rows are carried over; ``model_versions.status`` becomes the registration outcome.
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('champions',
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('previous', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('promoted_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('application', name=op.f('pk_champions'))
    )
    with op.batch_alter_table('model_versions') as batch:
        batch.add_column(sa.Column('sha256', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('fingerprint', sa.String(length=64), nullable=True))
    op.execute(
        "INSERT INTO champions (application, version, previous, reason, promoted_at) "
        "SELECT application, version, NULL, COALESCE(reason, 'champion before revision 0004'), created_at "
        "FROM model_versions WHERE status = 'champion'"
    )
    op.execute("UPDATE model_versions SET status = 'promoted' WHERE status IN ('champion', 'retired')")
    op.execute("UPDATE model_versions SET status = 'kept' WHERE status = 'challenger'")


def downgrade() -> None:
    op.execute("UPDATE model_versions SET status = 'challenger' WHERE status IN ('kept', 'promoted')")
    op.execute(
        "UPDATE model_versions SET status = 'champion' WHERE EXISTS (SELECT 1 FROM champions c "
        "WHERE c.application = model_versions.application AND c.version = model_versions.version)"
    )
    with op.batch_alter_table('model_versions') as batch:
        batch.drop_column('fingerprint')
        batch.drop_column('sha256')
    op.drop_table('champions')
