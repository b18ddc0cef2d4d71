"""The bulk paths the billing batches take: `insert_entries` over several statements (the
timestamp bound once per statement on SQLite), `app.db.driver_rows` (the driver's plain rows of
a Core select) and `app.db.driver_update_many` (many rows updated by key)."""

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from app.billing.services import ROWS_PER_INSERT, insert_entries
from app import db
from app.db import driver_rows, transaction
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE, SHARE, AccountBalance, LedgerEntry
from app.ledger.services import balances_fen
from tests.factories import EstateFactory

UTC = dt.timezone.utc
AT = dt.datetime(2026, 11, 22, 15, 59, 59, 250_000, tzinfo=UTC)


@pytest.fixture
def accounts(engine):
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    numbers = [estate.account(gateway_id=gateway, unit_id=u, balance_fen=10_000)
               for u in range(1, 4)]
    with transaction(engine) as s:
        return list(s.exec(select(Account.id).where(Account.number.in_(numbers))
                           .order_by(Account.id)))


def test_many_rows_over_several_statements_each_as_given(engine, accounts):
    count = 2 * ROWS_PER_INSERT + 37  # two full statements and a shorter one
    rows = [(accounts[i % 3], -(i + 1), CHARGE if i % 2 else SHARE, f"bulk:{i}",
             f"第 {i} 条" if i % 5 else "", i * 10 if i % 2 else None) for i in range(count)]
    with transaction(engine) as s:
        insert_entries(s.connection(), rows, created_at=AT)
    with transaction(engine) as s:
        got = s.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key.like("bulk:%"))
                     .order_by(LedgerEntry.id)).all()
        assert [(e.account_id, e.amount_fen, e.kind, e.idempotency_key, e.memo, e.energy_wh)
                for e in got] == rows
        assert {e.created_at for e in got} == {AT}
        # the kept balances moved by every entry, once
        expected = {a: 10_000 - sum(-r[1] for r in rows if r[0] == a) for a in accounts}
        assert balances_fen(s, set(accounts)) == expected
        assert {b.account_id: b.entry_count for b in s.exec(
            select(AccountBalance).where(AccountBalance.account_id.in_(accounts)))} == \
            {a: 1 + sum(1 for r in rows if r[0] == a) for a in accounts}


def test_a_key_posted_before_fails_the_whole_batch(engine, accounts):
    with transaction(engine) as s:
        insert_entries(s.connection(), [(accounts[0], -5, CHARGE, "once", "", None)],
                       created_at=AT)
    rows = [(accounts[1], -1, CHARGE, f"again:{i}", "", None) for i in range(ROWS_PER_INSERT)]
    rows.append((accounts[1], -5, CHARGE, "once", "", None))
    with pytest.raises(IntegrityError):
        with transaction(engine) as s:
            insert_entries(s.connection(), rows, created_at=AT)
    with transaction(engine) as s:
        assert s.exec(select(sa.func.count()).select_from(LedgerEntry)
                      .where(LedgerEntry.idempotency_key.like("again:%"))).one() == 0
        assert balances_fen(s, {accounts[1]}) == {accounts[1]: 10_000}


def test_driver_rows_are_the_plain_rows_of_the_select(engine, accounts):
    query = (select(Account.id, Account.number, Meter.unit_id,
                    sa.case((Meter.relay_open.is_(False), 1), else_=0))
             .join(Meter, Meter.account_id == Account.id)
             .where(Account.id.in_(accounts[1:])).order_by(Account.id))
    with transaction(engine) as s:
        rows = driver_rows(s.connection(), query)
        assert rows == [tuple(row) for row in s.execute(query).all()]
        assert [type(row) for row in rows] == [tuple, tuple]
        assert [row[2:] for row in rows] == [(2, 1), (3, 1)]


@pytest.mark.parametrize("column", [Meter.relay_open, Account.created_at])
def test_driver_rows_refuses_a_column_the_driver_would_not_give_as_read(engine, accounts,
                                                                         column):
    # a Boolean is an integer on SQLite, a datetime naive there (and any UTCDateTime goes
    # through its type): SQLAlchemy makes them what the code expects, driver_rows would not
    query = (select(Meter.id, column).join(Account, Account.id == Meter.account_id)
             .where(Account.id.in_(accounts)).order_by(Meter.id))
    with transaction(engine) as s:
        if column is Meter.relay_open and engine.dialect.name == "postgresql":
            rows = driver_rows(s.connection(), query)  # psycopg gives a bool itself
            assert [relay for _, relay in rows] == [False, False, False]
            assert all(type(relay) is bool for _, relay in rows)
            return
        with pytest.raises(ValueError, match="would be processed"):
            driver_rows(s.connection(), query)


def test_update_many_sets_each_row_by_its_key(engine, accounts, monkeypatch):
    monkeypatch.setattr(db, "UPDATE_ROWS", 2)  # on SQLite: a full statement and a shorter one
    with transaction(engine) as s:
        meters = dict(s.exec(select(Meter.account_id, Meter.id)
                             .where(Meter.account_id.in_(accounts))).all())
        db.driver_update_many(s.connection(), "meter", ("billed_exact_e7", "billed_fen"), "id",
                              [(1_234_567 * i, 12 * i, meters[a])
                               for i, a in enumerate(accounts, 1)])
        db.driver_update_many(s.connection(), "account", ("cycle_wh",), "id",
                              [(1_000 + a, a) for a in accounts[:2]])
        db.driver_update_many(s.connection(), "account", ("cycle_wh",), "id", [])
    with transaction(engine) as s:
        assert [(m.billed_exact_e7, m.billed_fen) for m in s.exec(
            select(Meter).where(Meter.account_id.in_(accounts)).order_by(Meter.account_id))] == \
            [(1_234_567, 12), (2_469_134, 24), (3_703_701, 36)]
        assert [a.cycle_wh for a in s.exec(select(Account).where(Account.id.in_(accounts))
                                           .order_by(Account.id))] == \
            [1_000 + accounts[0], 1_000 + accounts[1], 0]


def test_update_many_refuses_a_key_twice_and_changes_nothing(engine, accounts):
    with pytest.raises(ValueError, match="given twice"):
        with transaction(engine) as s:
            db.driver_update_many(s.connection(), "account", ("cycle_wh",), "id",
                                  [(5, accounts[0]), (6, accounts[1]), (7, accounts[0])])
    with transaction(engine) as s:
        assert set(s.exec(select(Account.cycle_wh).where(Account.id.in_(accounts)))) == {0}
