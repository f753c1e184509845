"""dashboard tables: accuracy, percentile bands, forecast drivers, active alerts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dashboard_accuracy',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.DateTime(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('mae', sa.Double(), nullable=True),
    sa.Column('mape', sa.Double(), nullable=True),
    sa.Column('bias', sa.Double(), nullable=True),
    sa.Column('n_interval', sa.Integer(), nullable=False),
    sa.Column('coverage', sa.Double(), nullable=True),
    sa.Column('nominal_coverage', sa.Double(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_accuracy')),
    sa.UniqueConstraint('application', 'period', 'horizon', name='uq_dashboard_accuracy_key')
    )
    op.create_table('dashboard_active_alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('alert_key', sa.String(length=255), nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=True),
    sa.Column('horizon', sa.Integer(), nullable=True),
    sa.Column('target_hour', sa.DateTime(), nullable=True),
    sa.Column('lead_hours', sa.Integer(), nullable=True),
    sa.Column('predicted', sa.Double(), nullable=True),
    sa.Column('threshold', sa.Double(), nullable=True),
    sa.Column('latest_peak', sa.Double(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('notified', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_active_alerts')),
    sa.UniqueConstraint('alert_key', name='uq_dashboard_active_alerts_alert_key')
    )
    with op.batch_alter_table('dashboard_active_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_dashboard_active_alerts_app', ['application'], unique=False)

    op.create_table('dashboard_forecast_drivers',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('driver_rank', sa.Integer(), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('target_hour', sa.DateTime(), nullable=False),
    sa.Column('driver', sa.String(length=255), nullable=False),
    sa.Column('contribution', sa.Double(), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_forecast_drivers')),
    sa.UniqueConstraint('application', 'horizon', 'driver_rank', name='uq_dashboard_forecast_drivers_key')
    )
    op.create_table('dashboard_percentile_bands',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('application', sa.String(length=128), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=16), nullable=False),
    sa.Column('origin', sa.DateTime(), nullable=False),
    sa.Column('target_hour', sa.DateTime(), nullable=False),
    sa.Column('forecast', sa.Double(), nullable=True),
    sa.Column('lower', sa.Double(), nullable=True),
    sa.Column('upper', sa.Double(), nullable=True),
    sa.Column('n_hours', sa.Integer(), nullable=False),
    sa.Column('p60', sa.Double(), nullable=True),
    sa.Column('p75', sa.Double(), nullable=True),
    sa.Column('p90', sa.Double(), nullable=True),
    sa.Column('p99', sa.Double(), nullable=True),
    sa.Column('band_position', sa.String(length=16), nullable=True),
    sa.Column('alert_threshold', sa.Double(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_dashboard_percentile_bands')),
    sa.UniqueConstraint('application', 'horizon', 'period', name='uq_dashboard_percentile_bands_key')
    )


def downgrade() -> None:
    op.drop_table('dashboard_percentile_bands')
    op.drop_table('dashboard_forecast_drivers')
    with op.batch_alter_table('dashboard_active_alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_dashboard_active_alerts_app')

    op.drop_table('dashboard_active_alerts')
    op.drop_table('dashboard_accuracy')
