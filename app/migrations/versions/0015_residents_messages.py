"""residents (phone / openid), their bindings to households, SMS codes, prepaid-agreement
acceptances; messages to residents (WeChat, SMS) with their delivery; estate.wechat_messages

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 14:47:28.735974
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('resident',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('openid', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('openid'),
    sa.UniqueConstraint('phone')
    )
    op.create_table('agreement_acceptance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('accepted_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('client', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['resident_id'], ['resident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resident_id', 'account_id', 'version')
    )
    with op.batch_alter_table('agreement_acceptance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agreement_acceptance_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agreement_acceptance_resident_id'), ['resident_id'], unique=False)

    op.create_table('resident_account',
    sa.Column('resident_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('bound_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('how', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reminders', sa.Boolean(), nullable=False),
    sa.Column('notices_read_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['resident_id'], ['resident.id'], ),
    sa.PrimaryKeyConstraint('resident_id', 'account_id')
    )
    with op.batch_alter_table('resident_account', schema=None) as batch_op:
        batch_op.create_index('ix_resident_account_account_id', ['account_id'], unique=False)

    op.create_table('sms_code',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=True),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('used_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sms_code', schema=None) as batch_op:
        batch_op.create_index('ix_sms_code_phone_created_at', ['phone', 'created_at'], unique=False)

    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('resident_id', sa.Integer(), nullable=True),
    sa.Column('notice_id', sa.Integer(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('recipient', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('template', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('provider_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('dedupe_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['account.id'], ),
    sa.ForeignKeyConstraint(['notice_id'], ['notice.id'], ),
    sa.ForeignKeyConstraint(['resident_id'], ['resident.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index('ix_message_account_id_created_at', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_message_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    # in place, not a batch rebuild of `estate` (the rows that refer to it)
    op.add_column('estate', sa.Column('wechat_messages', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default='template'))



def downgrade() -> None:
    op.drop_column('estate', 'wechat_messages')  # in place (SQLite ≥ 3.35), see 0014

    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index('ix_message_status_next_attempt_at')
        batch_op.drop_index('ix_message_account_id_created_at')

    op.drop_table('message')
    with op.batch_alter_table('sms_code', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_code_phone_created_at')

    op.drop_table('sms_code')
    with op.batch_alter_table('resident_account', schema=None) as batch_op:
        batch_op.drop_index('ix_resident_account_account_id')

    op.drop_table('resident_account')
    with op.batch_alter_table('agreement_acceptance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agreement_acceptance_resident_id'))
        batch_op.drop_index(batch_op.f('ix_agreement_acceptance_account_id'))

    op.drop_table('agreement_acceptance')
    op.drop_table('resident')
