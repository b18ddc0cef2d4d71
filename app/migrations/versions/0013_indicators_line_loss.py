"""the field's indicators and line loss: building.line_loss_threshold_pct, meter.building_main
(a building's main meter, 总表), anomaly.building_id and anomaly.day (one line-loss anomaly per
building and day: a UNIQUE index), command indexed by created_at, by completed_at and by
(meter_id, action, created_at, completed_at, state), daily_frozen by day, ledger_day,
building_day and frozen_day (each ended local day frozen: the accounts' ledger, the buildings'
figures)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00
"""
from alembic import op
import sqlalchemy as sa
import app.db


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('building', schema=None) as batch_op:
        batch_op.add_column(sa.Column('line_loss_threshold_pct',
                                      app.db.Decimal4(precision=12, scale=4), nullable=False,
                                      server_default='5.0000'))
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('building_main', sa.Boolean(), nullable=False,
                                      server_default='0'))
    # A column with a foreign key is added with an inline REFERENCES (as in 0005): a batch
    # rebuild of `anomaly` is not needed for it.
    op.add_column('anomaly', sa.Column('building_id', sa.Integer(),
                                       sa.ForeignKey('building.id',
                                                     name='fk_anomaly_building_id_building'),
                                       nullable=True), inline_references=True)
    op.add_column('anomaly', sa.Column('day', sa.Date(), nullable=True))
    op.create_index('uq_anomaly_kind_building_day', 'anomaly', ['kind', 'building_id', 'day'],
                    unique=True)
    op.create_index('ix_command_created_at', 'command', ['created_at'])
    op.create_index('ix_command_completed_at', 'command', ['completed_at'])
    op.create_index('ix_command_meter_id_action_times', 'command',
                    ['meter_id', 'action', 'created_at', 'completed_at', 'state'])
    op.create_index('ix_daily_frozen_day', 'daily_frozen', ['day'])
    op.create_table(
        'ledger_day',
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('charged_fen', sa.BigInteger(), nullable=False),
        sa.Column('shared_fen', sa.BigInteger(), nullable=False),
        sa.Column('net_fen', sa.BigInteger(), nullable=False),
        sa.Column('own_fen', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], ['account.id']),
        sa.PrimaryKeyConstraint('account_id', 'day'),
    )
    op.create_table(
        'building_day',
        sa.Column('building_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('meters', sa.Integer(), nullable=False),
        sa.Column('meters_read', sa.Integer(), nullable=False),
        sa.Column('charged_fen', sa.BigInteger(), nullable=False),
        sa.Column('shared_fen', sa.BigInteger(), nullable=False),
        sa.Column('arrears_start_fen', sa.BigInteger(), nullable=False),
        sa.Column('arrears_end_fen', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['building_id'], ['building.id']),
        sa.PrimaryKeyConstraint('building_id', 'day'),
    )
    op.create_table(
        'frozen_day',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('accounts', sa.Integer(), nullable=False),
        sa.Column('frozen_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('day'),
    )


def downgrade() -> None:
    op.drop_table('frozen_day')
    op.drop_table('building_day')
    op.drop_table('ledger_day')
    op.drop_index('ix_daily_frozen_day', table_name='daily_frozen')
    op.drop_index('ix_command_meter_id_action_times', table_name='command')
    op.drop_index('ix_command_completed_at', table_name='command')
    op.drop_index('ix_command_created_at', table_name='command')
    op.drop_index('uq_anomaly_kind_building_day', table_name='anomaly')
    with op.batch_alter_table('anomaly', schema=None) as batch_op:  # its foreign key with it
        batch_op.drop_column('day')
        batch_op.drop_column('building_id')
    # Dropped in place (SQLite ≥ 3.35 has DROP COLUMN): a batch rebuild of `meter` or
    # `building` would fail on the rows that refer to them.
    op.drop_column('meter', 'building_main')
    op.drop_column('building', 'line_loss_threshold_pct')
