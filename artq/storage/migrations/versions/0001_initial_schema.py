"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dashboard_forecast_actual',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('target_hour', sa.DateTime(), nullable=False),
    sa.Column('forecast', sa.Double(), nullable=False),
    sa.Column('lower', sa.Double(), nullable=True),
    sa.Column('upper', sa.Double(), nullable=True),
    sa.Column('actual', sa.Double(), nullable=True),
    sa.Column('abs_error', sa.Double(), nullable=True),
    sa.Column('inside_interval', sa.Boolean(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_forecast_actual')),
    sa.UniqueConstraint('application', 'origin', 'horizon', name='uq_dashboard_forecast_actual_key')
    )
    with op.batch_alter_table('dashboard_forecast_actual', schema=None) as batch_op:
        batch_op.create_index('ix_dashboard_forecast_actual_app_target', ['application', 'target_hour'], unique=False)

    op.create_table('dashboard_latest_forecast',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('target_hour', sa.DateTime(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('lower', sa.Double(), nullable=True),
    sa.Column('upper', sa.Double(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_latest_forecast')),
    sa.UniqueConstraint('application', 'horizon', name='uq_dashboard_latest_forecast_key')
    )
    op.create_table('forecasts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('target_hour', sa.DateTime(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('lower', sa.Double(), nullable=True),
    sa.Column('upper', sa.Double(), nullable=True),
    sa.Column('coverage', sa.Double(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=False),
    sa.Column('drivers', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecasts')),
    sa.UniqueConstraint('application', 'origin', 'horizon', name='uq_forecasts_key')
    )
    with op.batch_alter_table('forecasts', schema=None) as batch_op:
        batch_op.create_index('ix_forecasts_app_target', ['application', 'target_hour'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('training_start', sa.DateTime(), nullable=True),
    sa.Column('training_end', sa.DateTime(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('application', 'version', name='uq_model_versions_key')
    )
    op.create_table('observations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('server', sa.String(length=128), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('hour', sa.DateTime(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.Column('fetched_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_observations')),
    sa.UniqueConstraint('application', 'server', 'metric', 'hour', name='uq_observations_key')
    )
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.create_index('ix_observations_app_hour', ['application', 'hour'], unique=False)

    op.create_table('pipeline_runs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('trigger', sa.String(length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('fetch_s', sa.Double(), nullable=True),
    sa.Column('predict_s', sa.Double(), nullable=True),
    sa.Column('refresh_s', sa.Double(), nullable=True),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('task_ids', sa.JSON(), nullable=True),
    sa.Column('details', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_runs')),
    sa.UniqueConstraint('application', 'origin', name='uq_pipeline_runs_key')
    )
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_runs_status', ['status'], unique=False)

    op.create_table('source_gaps',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('server', sa.String(length=128), nullable=False),
    sa.Column('metric', sa.String(length=32), nullable=False),
    sa.Column('hour', sa.DateTime(), nullable=False),
    sa.Column('first_seen', sa.DateTime(), nullable=False),
    sa.Column('last_checked', sa.DateTime(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_source_gaps')),
    sa.UniqueConstraint('application', 'server', 'metric', 'hour', name='uq_source_gaps_key')
    )


def downgrade() -> None:
    op.drop_table('source_gaps')
    with op.batch_alter_table('pipeline_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_pipeline_runs_status')

    op.drop_table('pipeline_runs')
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.drop_index('ix_observations_app_hour')

    op.drop_table('observations')
    op.drop_table('model_versions')
    with op.batch_alter_table('forecasts', schema=None) as batch_op:
        batch_op.drop_index('ix_forecasts_app_target')

    op.drop_table('forecasts')
    op.drop_table('dashboard_latest_forecast')
    with op.batch_alter_table('dashboard_forecast_actual', schema=None) as batch_op:
        batch_op.drop_index('ix_dashboard_forecast_actual_app_target')

    op.drop_table('dashboard_forecast_actual')

