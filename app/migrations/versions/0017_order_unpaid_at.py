"""pay_order.unpaid_at: when the provider, asked about a pending order, said it was not paid

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 15:50:00
"""
from alembic import op
import sqlalchemy as sa
import app.db


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # in place, not a batch rebuild (the rows that refer to pay_order)
    op.add_column('pay_order', sa.Column('unpaid_at', app.db.UTCDateTime(timezone=True),
                                         nullable=True))


def downgrade() -> None:
    op.drop_column('pay_order', 'unpaid_at')
