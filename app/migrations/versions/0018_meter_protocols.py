"""Meter protocols: gateway.protocol (modbus_tcp, modbus_rtu_over_tcp, dlt645_tcp); meter.unit_id
wide enough for a 12-digit DL/T 645 address; meter.close_allowed (armed for the button, 允许合闸);
anomaly.gateway_id (a whole gateway down is one anomaly)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 18:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # in place, not a batch rebuild (the rows that refer to gateway and meter)
    op.add_column('gateway', sa.Column('protocol', sa.String(), nullable=False,
                                       server_default='modbus_tcp'))
    op.add_column('meter', sa.Column('close_allowed', sa.Boolean(), nullable=False,
                                     server_default=sa.false()))
    if op.get_bind().dialect.name == 'postgresql':
        # SQLite's INTEGER already holds 64 bits
        op.alter_column('meter', 'unit_id', type_=sa.BigInteger(), existing_nullable=False)
    # inline REFERENCES, as in 0013: no batch rebuild of `anomaly`
    op.add_column('anomaly', sa.Column('gateway_id', sa.Integer(),
                                       sa.ForeignKey('gateway.id',
                                                     name='fk_anomaly_gateway_id_gateway'),
                                       nullable=True), inline_references=True)


def downgrade() -> None:
    with op.batch_alter_table('anomaly', schema=None) as batch_op:  # its foreign key with it
        batch_op.drop_column('gateway_id')
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('meter', 'unit_id', type_=sa.Integer(), existing_nullable=False)
    op.drop_column('meter', 'close_allowed')
    op.drop_column('gateway', 'protocol')
