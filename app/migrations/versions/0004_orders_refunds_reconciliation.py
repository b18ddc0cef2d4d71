"""orders: lost notifications (query, close), refunds, reconciliation (对账)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 00:07:22.646771
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reconcile_difference',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bill_date', sa.Date(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('out_trade_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('out_refund_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('provider_trade_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('our_amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('bill_amount_fen', sa.BigInteger(), nullable=True),
    sa.Column('expected_fee_e5', sa.BigInteger(), nullable=True),
    sa.Column('bill_fee_e5', sa.BigInteger(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('found_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bill_date', 'channel', 'kind', 'out_trade_no', 'out_refund_no', name='uq_reconcile_difference')
    )
    with op.batch_alter_table('reconcile_difference', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reconcile_difference_bill_date'), ['bill_date'], unique=False)

    op.create_table('reconcile_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bill_date', sa.Date(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('differences', sa.Integer(), nullable=False),
    sa.Column('bill_amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('bill_fee_e5', sa.BigInteger(), nullable=False),
    sa.Column('ran_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bill_date', 'channel', name='uq_reconcile_run_day')
    )
    op.create_table('refund',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('out_refund_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('requested_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('provider_refund_no', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('submitted_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('confirmed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reconciled_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['order_id'], ['pay_order.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_refund_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refund_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_refund_out_refund_no'), ['out_refund_no'], unique=True)
        batch_op.create_index(batch_op.f('ix_refund_status'), ['status'], unique=False)

    with op.batch_alter_table('pay_order', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('queried_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('query_count', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('reconciled_on', sa.Date(), nullable=True))
        batch_op.create_index(batch_op.f('ix_pay_order_paid_at'), ['paid_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_pay_order_status'), ['status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('pay_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pay_order_status'))
        batch_op.drop_index(batch_op.f('ix_pay_order_paid_at'))
        batch_op.drop_column('reconciled_on')
        batch_op.drop_column('query_count')
        batch_op.drop_column('queried_at')
        batch_op.drop_column('closed_at')

    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refund_status'))
        batch_op.drop_index(batch_op.f('ix_refund_out_refund_no'))
        batch_op.drop_index(batch_op.f('ix_refund_order_id'))
        batch_op.drop_index(batch_op.f('ix_refund_account_id'))

    op.drop_table('refund')
    op.drop_table('reconcile_run')
    with op.batch_alter_table('reconcile_difference', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reconcile_difference_bill_date'))

    op.drop_table('reconcile_difference')
