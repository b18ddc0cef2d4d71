"""reading: an index on (meter_id, read_at), for a meter's register at a time; meter:
relay_read_at, when its relay state was learned

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 02:40:00
"""
from alembic import op
import sqlalchemy as sa
import app.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_reading_meter_id_read_at', 'reading', ['meter_id', 'read_at'],
                    unique=False)
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('relay_read_at', app.db.UTCDateTime(timezone=True),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.drop_column('relay_read_at')
    op.drop_index('ix_reading_meter_id_read_at', table_name='reading')
