"""billing: tariffs and versions, account tariff and cycle, common-area meters, shares,
emergency credit

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:14:07.244879
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tariff',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('tariff_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tariff_id', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('tariff_json', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tariff_id'], ['tariff.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tariff_id', 'effective_from')
    )
    with op.batch_alter_table('tariff_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tariff_version_tariff_id'), ['tariff_id'], unique=False)

    op.create_table('share_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('building_id', sa.Integer(), nullable=False),
    sa.Column('period_start', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('period_end', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('scheme', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('energy_wh', sa.BigInteger(), nullable=False),
    sa.Column('exact_e7', sa.BigInteger(), nullable=False),
    sa.Column('charge_fen', sa.BigInteger(), nullable=False),
    sa.Column('households', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['building_id'], ['building.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('building_id', 'period_start', 'period_end')
    )
    with op.batch_alter_table('share_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_share_run_building_id'), ['building_id'], unique=False)

    # Columns with a foreign key are added with an inline REFERENCES (SQLite's ADD COLUMN takes
    # one): a batch rebuild of `account` or `meter` would fail on the rows that refer to them.
    op.add_column('account', sa.Column('tariff_id', sa.Integer(),
                                       sa.ForeignKey('tariff.id', name='fk_account_tariff_id_tariff'),
                                       nullable=True), inline_references=True)
    op.add_column('meter', sa.Column('building_id', sa.Integer(),
                                     sa.ForeignKey('building.id', name='fk_meter_building_id_building'),
                                     nullable=True), inline_references=True)
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tariff_uplift', sa.Boolean(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('cycle_start', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('cycle_wh', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('cycle_opening_wh', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('closed_at', app.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('emergency_credit_fen', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index(batch_op.f('ix_account_tariff_id'), ['tariff_id'], unique=False)

    with op.batch_alter_table('building', schema=None) as batch_op:
        batch_op.add_column(sa.Column('share_scheme', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default='area'))
        batch_op.add_column(sa.Column('common_price_yuan_per_kwh', app.db.Decimal4(precision=12, scale=4), nullable=False, server_default='0.5583'))
        batch_op.add_column(sa.Column('shared_exact_e7', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('shared_fen', sa.BigInteger(), nullable=False, server_default='0'))

    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('common_area', sa.Boolean(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_period_raw', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f('ix_meter_building_id'), ['building_id'], unique=False)



def _drop_fk_column(table: str, column: str) -> None:
    """PostgreSQL drops the column's foreign key with it; SQLite rebuilds the table without."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_column(column)


def downgrade() -> None:
    op.drop_index('ix_meter_building_id', table_name='meter')
    op.drop_index('ix_account_tariff_id', table_name='account')
    _drop_fk_column('meter', 'building_id')
    _drop_fk_column('account', 'tariff_id')
    with op.batch_alter_table('meter', schema=None) as batch_op:
        batch_op.drop_column('last_period_raw')
        batch_op.drop_column('common_area')

    with op.batch_alter_table('building', schema=None) as batch_op:
        batch_op.drop_column('shared_fen')
        batch_op.drop_column('shared_exact_e7')
        batch_op.drop_column('common_price_yuan_per_kwh')
        batch_op.drop_column('share_scheme')

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('emergency_credit_fen')
        batch_op.drop_column('closed_at')
        batch_op.drop_column('cycle_opening_wh')
        batch_op.drop_column('cycle_wh')
        batch_op.drop_column('cycle_start')
        batch_op.drop_column('tariff_uplift')

    with op.batch_alter_table('share_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_share_run_building_id'))

    op.drop_table('share_run')
    with op.batch_alter_table('tariff_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tariff_version_tariff_id'))

    op.drop_table('tariff_version')
    op.drop_table('tariff')
