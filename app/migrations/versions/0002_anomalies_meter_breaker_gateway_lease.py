"""anomalies, meter breaker, gateway lease

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 23:24:07.773595
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('anomaly',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('meter_id', sa.Integer(), nullable=True),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('command_id', sa.Integer(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_wh', sa.BigInteger(), nullable=True),
    sa.Column('to_wh', sa.BigInteger(), nullable=True),
    sa.Column('energy_wh', sa.BigInteger(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['command_id'], ['command.id'], ),
    sa.ForeignKeyConstraint(['meter_id'], ['meter.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('anomaly', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_anomaly_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_anomaly_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_anomaly_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_anomaly_meter_id'), ['meter_id'], unique=False)

    op.create_table('worker_heartbeat',
    sa.Column('worker_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seen_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('worker_id')
    )
    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leased_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', app.db.UTCDateTime(timezone=True), nullable=True))

    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failures_in_row', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('max_power_w', sa.Integer(), nullable=False, server_default='13800'))



def downgrade() -> None:
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.drop_column('max_power_w')
        batch_op.drop_column('failures_in_row')

    with op.batch_alter_table('gateway', schema=None) as batch_op:
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('leased_by')

    with op.batch_alter_table('anomaly', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_anomaly_meter_id'))
        batch_op.drop_index(batch_op.f('ix_anomaly_kind'))
        batch_op.drop_index(batch_op.f('ix_anomaly_created_at'))
        batch_op.drop_index(batch_op.f('ix_anomaly_account_id'))

    op.drop_table('anomaly')
    op.drop_table('worker_heartbeat')
