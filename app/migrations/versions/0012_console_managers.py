"""manager, manager_building, manager_session, audit_entry (insert-only), rate_counter: the
property managers' console

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:00:00
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

SQLITE_TRIGGERS = [
    """CREATE TRIGGER audit_entry_no_update BEFORE UPDATE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END""",
    """CREATE TRIGGER audit_entry_no_delete BEFORE DELETE ON audit_entry
       BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END""",
]
POSTGRES_TRIGGERS = [
    """CREATE FUNCTION audit_entry_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'the audit log is insert-only'; END $$""",
    """CREATE TRIGGER audit_entry_insert_only BEFORE UPDATE OR DELETE ON audit_entry
       FOR EACH ROW EXECUTE FUNCTION audit_entry_insert_only()""",
]


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString()
    op.create_table(
        'manager',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', text, nullable=False),
        sa.Column('role', text, nullable=False),
        sa.Column('estate_id', sa.Integer(), nullable=False),
        sa.Column('password_hash', text, nullable=False),
        sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('disabled_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['estate_id'], ['estate.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_manager_name', 'manager', ['name'], unique=True)
    op.create_index('ix_manager_estate_id', 'manager', ['estate_id'])
    op.create_table(
        'manager_building',
        sa.Column('manager_id', sa.Integer(), nullable=False),
        sa.Column('building_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['building_id'], ['building.id']),
        sa.ForeignKeyConstraint(['manager_id'], ['manager.id']),
        sa.PrimaryKeyConstraint('manager_id', 'building_id'),
    )
    op.create_table(
        'manager_session',
        sa.Column('token_sha256', text, nullable=False),
        sa.Column('manager_id', sa.Integer(), nullable=False),
        sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_seen_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('client', text, nullable=False),
        sa.ForeignKeyConstraint(['manager_id'], ['manager.id']),
        sa.PrimaryKeyConstraint('token_sha256'),
    )
    op.create_index('ix_manager_session_manager_id', 'manager_session', ['manager_id'])
    op.create_table(
        'audit_entry',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('estate_id', sa.Integer(), nullable=True),
        sa.Column('manager_id', sa.Integer(), nullable=True),
        sa.Column('manager_name', text, nullable=False),
        sa.Column('client', text, nullable=False),
        sa.Column('action', text, nullable=False),
        sa.Column('object_type', text, nullable=False),
        sa.Column('object_id', text, nullable=False),
        sa.Column('before', text, nullable=False),
        sa.Column('after', text, nullable=False),
        sa.Column('reason', text, nullable=False),
        sa.ForeignKeyConstraint(['estate_id'], ['estate.id']),
        sa.ForeignKeyConstraint(['manager_id'], ['manager.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_audit_entry_estate_id_at', 'audit_entry', ['estate_id', 'at'])
    op.create_table(
        'rate_counter',
        sa.Column('key', text, nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('expires_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('key'),
    )
    dialect = op.get_bind().dialect.name
    for statement in (POSTGRES_TRIGGERS if dialect == 'postgresql' else SQLITE_TRIGGERS):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER audit_entry_insert_only ON audit_entry")
        op.execute("DROP FUNCTION audit_entry_insert_only()")
    else:
        op.execute("DROP TRIGGER audit_entry_no_delete")
        op.execute("DROP TRIGGER audit_entry_no_update")
    op.drop_table('rate_counter')
    op.drop_index('ix_audit_entry_estate_id_at', table_name='audit_entry')
    op.drop_table('audit_entry')
    op.drop_index('ix_manager_session_manager_id', table_name='manager_session')
    op.drop_table('manager_session')
    op.drop_table('manager_building')
    op.drop_index('ix_manager_estate_id', table_name='manager')
    op.drop_index('ix_manager_name', table_name='manager')
    op.drop_table('manager')
