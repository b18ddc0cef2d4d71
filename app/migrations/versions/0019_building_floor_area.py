"""building.floor_area_m2: a building's floor area (建筑面积), from the estate workbook

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 18:40:00
"""
from alembic import op
import sqlalchemy as sa
import app.db


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # in place, not a batch rebuild (the rows that refer to building)
    op.add_column('building', sa.Column('floor_area_m2', app.db.Decimal4(),
                                        nullable=True))


def downgrade() -> None:
    op.drop_column('building', 'floor_area_m2')
