"""meter.accrued_*: the charge accrued and not yet posted (charges posted hourly, and when a
threshold is crossed, instead of at every reading)

Every existing meter starts with nothing accrued: its posted charges equal its exact total
rounded (the per-reading rule), so no balance changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 10:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('accrued_from_wh', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('accrued_to_wh', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('accrued_wh', sa.BigInteger(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('accrued_hour', app.db.UTCDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column('accrued_lines', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.create_index('ix_meter_accrued_hour', ['accrued_hour'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.drop_index('ix_meter_accrued_hour')
        batch_op.drop_column('accrued_lines')
        batch_op.drop_column('accrued_hour')
        batch_op.drop_column('accrued_wh')
        batch_op.drop_column('accrued_to_wh')
        batch_op.drop_column('accrued_from_wh')
