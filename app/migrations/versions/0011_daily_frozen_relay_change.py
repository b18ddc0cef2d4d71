"""daily_frozen (with the 96-point curve), relay_change: readings rolled up as they are stored,
what lasts once raw readings are dropped after the retention period; built here from the
readings kept. notice indexed by (account_id, kind, created_at) instead of account_id alone

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 11:00:00
"""
import datetime as dt

from alembic import op
import sqlalchemy as sa
import sqlmodel
import app.db


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'daily_frozen',
        sa.Column('meter_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('opening_wh', sa.BigInteger(), nullable=False),
        sa.Column('register_wh', sa.BigInteger(), nullable=False),
        sa.Column('read_at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_wh', sa.BigInteger(), nullable=False),
        sa.Column('curve', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('spike_wh', sa.BigInteger(), nullable=True),
        sa.Column('peak_wh', sa.BigInteger(), nullable=True),
        sa.Column('flat_wh', sa.BigInteger(), nullable=True),
        sa.Column('valley_wh', sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(['meter_id'], ['meter.id']),
        sa.PrimaryKeyConstraint('meter_id', 'day'),
    )
    op.create_table(
        'relay_change',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('meter_id', sa.Integer(), nullable=False),
        sa.Column('at', app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('relay_open', sa.Boolean(), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(['meter_id'], ['meter.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_relay_change_meter_id_at', 'relay_change', ['meter_id', 'at'])
    op.create_index('ix_notice_account_id_kind_created_at', 'notice',
                    ['account_id', 'kind', 'created_at'])
    op.drop_index('ix_notice_account_id', table_name='notice')
    _backfill(op.get_bind())


def _backfill(conn) -> None:
    """The days and relay changes of the readings kept, meter by meter in time order, as
    `app.estate.rollup.Rollup` makes them (written out here: a migration keeps its own rows). A
    reading's energy counts as used when its register rose since the one before (what the
    worker charged then, an implausible jump aside: the days are for figures, the ledger keeps
    the money)."""
    china = dt.timezone(dt.timedelta(hours=8))
    col = sa.column
    reading = sa.table('reading', col('id'), col('meter_id'), col('energy_wh'), col('relay_open'),
                       col('read_at', app.db.UTCDateTime()))
    daily_t = sa.table('daily_frozen', col('meter_id'), col('day', sa.Date()), col('opening_wh'),
                       col('register_wh'), col('read_at', app.db.UTCDateTime()), col('used_wh'),
                       col('curve'))
    relay_t = sa.table('relay_change', col('meter_id'), col('at', app.db.UTCDateTime()),
                       col('relay_open', sa.Boolean()), col('source'))
    meters = [m for (m,) in conn.execute(sa.select(reading.c.meter_id).distinct())]
    for meter_id in meters:
        days, relays, register, relay = {}, [], None, None
        for read_at, energy_wh, relay_open in conn.execute(
                sa.select(reading.c.read_at, reading.c.energy_wh, reading.c.relay_open)
                .where(reading.c.meter_id == meter_id)
                .order_by(reading.c.read_at, reading.c.id)):
            if register is None or energy_wh != register:
                used = energy_wh - register if register is not None and energy_wh > register else 0
                local = read_at.astimezone(china)
                row = days.setdefault(local.date(), {"opening_wh": energy_wh, "used_wh": 0,
                                                     "curve": [0] * 96})
                row.update(register_wh=energy_wh, read_at=read_at)
                row["used_wh"] += used
                row["curve"][(local.hour * 60 + local.minute) // 15] += used
                register = energy_wh
            if relay_open != relay:
                relays.append({"meter_id": meter_id, "at": read_at, "relay_open": bool(relay_open),
                               "source": "reading"})
                relay = relay_open
        if days:
            conn.execute(daily_t.insert(), [
                {"meter_id": meter_id, "day": day, **row,
                 "curve": ",".join(str(x) if x else "" for x in row["curve"])}
                for day, row in days.items()])
        if relays:
            conn.execute(relay_t.insert(), relays)


def downgrade() -> None:
    op.create_index('ix_notice_account_id', 'notice', ['account_id'])
    op.drop_index('ix_notice_account_id_kind_created_at', table_name='notice')
    op.drop_index('ix_relay_change_meter_id_at', table_name='relay_change')
    op.drop_table('relay_change')
    op.drop_table('daily_frozen')
