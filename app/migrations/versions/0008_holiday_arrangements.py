"""holiday_arrangement, holiday_day: official holiday arrangements loaded by operators;
cut_decision.calendar: where the holiday calendar's answer came from

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 08:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'holiday_arrangement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('calendar', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('year', sa.Integer(), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('file_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('loaded_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('loaded_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_holiday_arrangement_calendar', 'holiday_arrangement', ['calendar'])
    op.create_index('ix_holiday_arrangement_year', 'holiday_arrangement', ['year'])
    op.create_table(
        'holiday_day',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('arrangement_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('rest', sa.Boolean(), nullable=False),
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(['arrangement_id'], ['holiday_arrangement.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_holiday_day_arrangement_id', 'holiday_day', ['arrangement_id'])
    with op.batch_alter_table('cut_decision', schema=None) as batch_op:
        batch_op.add_column(sa.Column('calendar', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('cut_decision', schema=None) as batch_op:
        batch_op.drop_column('calendar')
    op.drop_index('ix_holiday_day_arrangement_id', table_name='holiday_day')
    op.drop_table('holiday_day')
    op.drop_index('ix_holiday_arrangement_year', table_name='holiday_arrangement')
    op.drop_index('ix_holiday_arrangement_calendar', table_name='holiday_arrangement')
    op.drop_table('holiday_arrangement')
