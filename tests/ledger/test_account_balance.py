"""The kept balance (`account_balance`): moved by the database with every entry, in the entry's
own transaction; the ledger insert-only; the daily proof; the migration that built it; and
payments and charges on one account at once."""

import datetime as dt
import threading

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from app.anomalies.models import BALANCE_MISMATCH, Anomaly
from app.billing.emergency import take_emergency_credit
from app.db import make_engine, transaction, utcnow
from app.estate.models import Account
from app.ledger.checks import verify_balances
from app.ledger.models import CHARGE, TOPUP, AccountBalance, LedgerEntry
from app.ledger.services import balance_fen, funds, post_entry
from app.migrate import alembic_config, upgrade
from app.orders.models import Order
from app.orders.services import confirm_many
from meters.store import ReadingResult, record_readings
from payments.base import Notification
from tests.factories import EstateFactory, account_by_number, meter_of
from tests.policy.common import at, household, outcomes, poll


def kept(engine, account_id: int) -> tuple[int, int, int]:
    with transaction(engine, read_only=True) as s:
        row = s.get(AccountBalance, account_id)
        return row.balance_fen, row.advance_fen, row.entry_count


def ledger_sum(engine, account_id: int) -> int:
    with transaction(engine, read_only=True) as s:
        return int(s.exec(select(sa.func.coalesce(sa.func.sum(LedgerEntry.amount_fen), 0))
                          .where(LedgerEntry.account_id == account_id)).one())


def test_the_kept_balance_follows_every_entry(engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1,
                            balance_fen=-300, emergency_credit_fen=1000)
    account = account_by_number(engine, number)
    with transaction(engine) as s:
        post_entry(s, account_id=account.id, amount_fen=-12, kind=CHARGE, idempotency_key="c1")
        post_entry(s, account_id=account.id, amount_fen=-12, kind=CHARGE, idempotency_key="c1")
        take_emergency_credit(s, s.get(Account, account.id))
    assert kept(engine, account.id) == (-300 - 12 + 1000, 1000, 3)
    assert ledger_sum(engine, account.id) == 688
    with transaction(engine, read_only=True) as s:
        f = funds(s, {account.id})[account.id]
        assert (f.balance_fen, f.advance_fen, f.metered) == (688, 1000, True)
        assert balance_fen(s, account.id) == 688


def test_a_rolled_back_entry_leaves_the_kept_balance_as_it_was(engine):
    number = household(engine, balance_fen=500)
    account = account_by_number(engine, number)
    with pytest.raises(RuntimeError):
        with transaction(engine) as s:
            post_entry(s, account_id=account.id, amount_fen=9_999, kind=TOPUP,
                       idempotency_key="never")
            raise RuntimeError("the transaction fails after the entry")
    assert kept(engine, account.id) == (500, 0, 1)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_entry SET amount_fen = amount_fen + 100",
    "DELETE FROM ledger_entry",
])
def test_the_database_refuses_to_change_or_remove_a_ledger_entry(engine, statement):
    number = household(engine, balance_fen=500)
    with pytest.raises(sa.exc.DatabaseError, match="insert-only"):
        with transaction(engine) as s:
            s.execute(sa.text(statement))
    assert kept(engine, account_by_number(engine, number).id) == (500, 0, 1)


def test_a_kept_balance_that_differs_from_the_ledger_is_an_anomaly_and_stops_cuts(engine):
    number = household(engine, balance_fen=-100)  # exhausted, the real cut policy
    account = account_by_number(engine, number)
    assert verify_balances(engine).mismatches == []
    with transaction(engine) as s:  # what no code does: the row moved without an entry
        s.execute(sa.text("UPDATE account_balance SET balance_fen = balance_fen - 5 "
                          "WHERE account_id = :a"), {"a": account.id})
    result = verify_balances(engine)
    assert [(m.account_id, m.kept, m.summed) for m in result.mismatches] == [
        (account.id, (-105, 0, 1), (-100, 0, 1))]
    verify_balances(engine)  # a second check adds no second anomaly
    with transaction(engine, read_only=True) as s:
        anomalies = s.exec(select(Anomaly).where(Anomaly.kind == BALANCE_MISMATCH)).all()
    assert [(a.account_id, a.resolved_at) for a in anomalies] == [(account.id, None)]
    assert "-1.05 元" in anomalies[0].detail and "-1.00 元" in anomalies[0].detail

    poll(engine, number, at(2026, 11, 17, 10))
    assert poll(engine, number, at(2026, 11, 19, 10)) is False
    assert outcomes(engine, number)[-1] == ("refused", "balance_unverified")


def test_every_balance_survives_the_migration_that_keeps_them(database_url):
    command.downgrade(alembic_config(database_url), "0008")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO estate (id, name, manager_phone, quiet_start,"
                             " quiet_end, holiday_calendar, cut_notice_lead_h,"
                             " cut_requires_approval) VALUES (1, '翠苑', '', '20:00', '08:00',"
                             " 'cn', 24, FALSE)"))
        conn.execute(sa.text("INSERT INTO building (id, estate_id, name, share_scheme,"
                             " share_period, common_price_yuan_per_kwh, shared_exact_e7,"
                             " shared_fen) VALUES (1, 1, '1号楼', 'area', 'day', '0.5583', 0, 0)"))
        for n in range(3):
            conn.execute(sa.text(
                "INSERT INTO account (id, number, building_id, household, holder_name,"
                " holder_phone, floor_area_m2, strategy, price_yuan_per_kwh, tariff_uplift,"
                " cycle_wh, cycle_opening_wh, emergency_credit_fen, restore_threshold_fen,"
                " cut_below_fen, low_balance_threshold_fen, care_list, daily_rate_fen,"
                " created_at) VALUES (:id, :no, 1, '1-1-101', '', '', '89.5', 'residential',"
                " '0.5583', FALSE, 0, 0, 0, 0, 0, 1000, FALSE, 0, '2026-11-01 00:00:00')"),
                {"id": n + 1, "no": f"10101{n}"})
        entries = [(1, 5000, TOPUP), (1, -37, CHARGE), (1, -1, CHARGE), (2, 800, "emergency_credit"),
                   (2, -800, "emergency_credit"), (2, -5, CHARGE)]
        for k, (account_id, amount, kind) in enumerate(entries):
            conn.execute(sa.text(
                "INSERT INTO ledger_entry (account_id, amount_fen, kind, idempotency_key, memo,"
                " created_at) VALUES (:a, :f, :k, :key, '', '2026-11-02 00:00:00')"),
                {"a": account_id, "f": amount, "k": kind, "key": f"e{k}"})
    upgrade(database_url)
    with transaction(engine, read_only=True) as s:
        rows = {r.account_id: (r.balance_fen, r.advance_fen, r.entry_count)
                for r in s.exec(select(AccountBalance))}
        assert rows == {1: (4962, 0, 3), 2: (-5, 0, 3), 3: (0, 0, 0)}
        assert {a: balance_fen(s, a) for a in (1, 2, 3)} == {1: 4962, 2: -5, 3: 0}
    assert verify_balances(engine).mismatches == []
    engine.dispose()


def test_payments_and_charges_on_one_account_at_once_lose_nothing_and_never_deadlock(engine):
    """Two threads on one account as hard as they go: the notify desk's credits (top-ups of
    1.00 元, each crediting a batch of two orders) and the worker's readings (each 0.5583 元
    under the flat price, with the whole batch's meters locked). On PostgreSQL the balance row
    is the contended one."""
    estate = EstateFactory(engine)
    gateway_id = estate.gateway("127.0.0.1", 1)
    number = estate.account(gateway_id=gateway_id, unit_id=1, balance_fen=100_000)
    other = estate.account(gateway_id=gateway_id, unit_id=2, balance_fen=100_000)
    account, second = account_by_number(engine, number), account_by_number(engine, other)
    meters = [meter_of(engine, number).id, meter_of(engine, other).id]
    rounds = 60
    with transaction(engine) as s:
        for k in range(2 * rounds):
            s.add(Order(out_trade_no=f"FKLOAD{k:04d}", account_id=(account, second)[k % 2].id,
                        amount_fen=100, channel="alipay"))
    errors: list[BaseException] = []

    def pay():
        try:
            for k in range(0, 2 * rounds, 2):
                items = [(Notification("alipay", f"FKLOAD{j:04d}", 100, True, f"T{j}", "app",
                                       False, raw={}), {"app_id": "app"}) for j in (k, k + 1)]
                with transaction(engine) as s:
                    confirm_many(s, items)
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    start = utcnow() - dt.timedelta(hours=rounds + 1)

    def charge():  # 1 kWh an hour, an hour apart (plausible: no jump)
        try:
            for k in range(1, rounds + 1):
                record_readings(engine, [ReadingResult(m, 1000 * k, False,
                                                       start + dt.timedelta(hours=k))
                                         for m in reversed(meters)])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=pay), threading.Thread(target=charge)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    for a in (account, second):
        with transaction(engine, read_only=True) as s:
            assert balance_fen(s, a.id) == ledger_sum(engine, a.id) - pending_fen(s, a.id)
        assert kept(engine, a.id)[0] == ledger_sum(engine, a.id)
    expected = 100_000 + rounds * 100 - charged_fen(rounds)
    with transaction(engine, read_only=True) as s:
        assert balance_fen(s, account.id) == expected
    assert verify_balances(engine).mismatches == []


def charged_fen(rounds: int) -> int:
    """What `rounds` readings of 1 kWh each cost at 0.5583 元/kWh, the first from an unknown
    register (not charged): the one rounding rule over the exact total."""
    from decimal import Decimal

    from app.money import to_fen

    return to_fen(Decimal("0.5583") * (rounds - 1))


def pending_fen(session, account_id: int) -> int:
    from app.estate.models import Meter
    from app.money import e7_to_fen

    return sum(e7_to_fen(m.billed_exact_e7) - m.billed_fen for m in session.exec(
        select(Meter).where(Meter.account_id == account_id)))
