"""building.share_period: common-area shares daily or monthly, posted by the billing jobs

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 02:30:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('building', schema=None) as batch_op:
        batch_op.add_column(sa.Column('share_period', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default='day'))


def downgrade() -> None:
    with op.batch_alter_table('building', schema=None) as batch_op:
        batch_op.drop_column('share_period')
