"""batch jobs: who, what, state, progress, failures, result

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 15:36:40.168850
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('batch_job',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('estate_id', sa.Integer(), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('manager_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('params', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('building_ids', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('failure_count', sa.Integer(), nullable=False),
    sa.Column('failures', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('items', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('result_path', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('result_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('runner', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('resumes', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['estate_id'], ['estate.id'], ),
    sa.ForeignKeyConstraint(['manager_id'], ['manager.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_batch_job_estate_id_created_at', 'batch_job', ['estate_id', 'created_at'], unique=False)
    op.create_index('ix_batch_job_state_created_at', 'batch_job', ['state', 'created_at'], unique=False)



def downgrade() -> None:
    op.drop_index('ix_batch_job_state_created_at', table_name='batch_job')
    op.drop_index('ix_batch_job_estate_id_created_at', table_name='batch_job')

    op.drop_table('batch_job')
