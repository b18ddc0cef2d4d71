"""cut policy: decisions, manager tasks, approvals; estate and account policy fields

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 23:52:34.067501
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cut_approval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('requested_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['meter_id'], ['meter.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cut_approval', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cut_approval_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cut_approval_meter_id'), ['meter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cut_approval_state'), ['state'], unique=False)

    op.create_table('manager_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('meter_id', sa.Integer(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('done_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('done_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['meter_id'], ['meter.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('manager_task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manager_task_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_manager_task_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_manager_task_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_manager_task_meter_id'), ['meter_id'], unique=False)

    op.create_table('cut_decision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('meter_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('decided_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('not_before', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('command_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['command_id'], ['command.id'], ),
    sa.ForeignKeyConstraint(['meter_id'], ['meter.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cut_decision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cut_decision_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cut_decision_decided_at'), ['decided_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_cut_decision_meter_id'), ['meter_id'], unique=False)

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('low_balance_threshold_fen', sa.Integer(), nullable=False, server_default='1000'))
        batch_op.add_column(sa.Column('care_list', sa.Boolean(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('exhausted_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('daily_rate_fen', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('daily_rate_on', sa.Date(), nullable=True))

    with op.batch_alter_table('estate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quiet_start', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='20:00'))
        batch_op.add_column(sa.Column('quiet_end', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='08:00'))
        batch_op.add_column(sa.Column('holiday_calendar', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='cn'))
        batch_op.add_column(sa.Column('cut_notice_lead_h', sa.Integer(), nullable=False, server_default='24'))
        batch_op.add_column(sa.Column('cut_requires_approval', sa.Boolean(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('estate', schema=None) as batch_op:
        batch_op.drop_column('cut_requires_approval')
        batch_op.drop_column('cut_notice_lead_h')
        batch_op.drop_column('holiday_calendar')
        batch_op.drop_column('quiet_end')
        batch_op.drop_column('quiet_start')

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('daily_rate_on')
        batch_op.drop_column('daily_rate_fen')
        batch_op.drop_column('exhausted_at')
        batch_op.drop_column('care_list')
        batch_op.drop_column('low_balance_threshold_fen')

    with op.batch_alter_table('cut_decision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cut_decision_meter_id'))
        batch_op.drop_index(batch_op.f('ix_cut_decision_decided_at'))
        batch_op.drop_index(batch_op.f('ix_cut_decision_account_id'))

    op.drop_table('cut_decision')
    with op.batch_alter_table('manager_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manager_task_meter_id'))
        batch_op.drop_index(batch_op.f('ix_manager_task_kind'))
        batch_op.drop_index(batch_op.f('ix_manager_task_created_at'))
        batch_op.drop_index(batch_op.f('ix_manager_task_account_id'))

    op.drop_table('manager_task')
    with op.batch_alter_table('cut_approval', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cut_approval_state'))
        batch_op.drop_index(batch_op.f('ix_cut_approval_meter_id'))
        batch_op.drop_index(batch_op.f('ix_cut_approval_account_id'))

    op.drop_table('cut_approval')
