"""refused_count (refused notifications counted per channel, reason and hour; only a sample
kept whole), job_run (when each background job last ran, for /readyz), pay_order indexed by
(status, paid_at) (the day's payments), estate.message_start/message_end (messaging hours)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 13:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'refused_count',
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('hour', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.Column('last_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('channel', 'reason', 'hour'),
    )
    # what was refused before: counted in the hours it came
    bind = op.get_bind()
    hour = ("date_trunc('hour', received_at)" if bind.dialect.name == 'postgresql'
            else "strftime('%Y-%m-%d %H:00:00.000000', received_at)")
    op.execute(f"INSERT INTO refused_count (channel, reason, hour, count, last_at) "
               f"SELECT channel, reason, {hour}, count(*), max(received_at) "
               f"FROM refused_notification GROUP BY channel, reason, {hour}")
    op.create_index('ix_refused_notification_channel_reason_received_at', 'refused_notification',
                    ['channel', 'reason', 'received_at'])
    op.create_index('ix_pay_order_status_paid_at', 'pay_order', ['status', 'paid_at'])
    with op.batch_alter_table('estate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_start', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default='08:00'))
        batch_op.add_column(sa.Column('message_end', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default='21:00'))
    op.create_table(
        'job_run',
        sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('last_run_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_ok_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('runs', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('job_run')
    # dropped in place (SQLite ≥ 3.35 has DROP COLUMN): a batch rebuild of `estate` would
    # fail on the rows that refer to it
    op.drop_column('estate', 'message_end')
    op.drop_column('estate', 'message_start')
    op.drop_index('ix_pay_order_status_paid_at', table_name='pay_order')
    op.drop_index('ix_refused_notification_channel_reason_received_at',
                  table_name='refused_notification')
    op.drop_table('refused_count')
