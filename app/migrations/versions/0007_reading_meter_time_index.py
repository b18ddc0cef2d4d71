"""reading: an index on (meter_id, read_at), for a meter's register at a time

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 02:40:00
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_reading_meter_id_read_at', 'reading', ['meter_id', 'read_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_reading_meter_id_read_at', table_name='reading')
