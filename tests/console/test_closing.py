"""Closing an account (销户) from the console: the final reading billed, the balance refunded
or carried, then no reading, charging, cutting or paying; reopening; who may; audited."""

from __future__ import annotations

import datetime as dt

from sqlmodel import select

from app.billing.closing import CARRY, close_account
from app.db import transaction, utcnow
from app.estate.models import Account, Reading
from app.ledger.models import CHARGE
from app.orders.models import Order, Refund
from meters.store import load_gateways
from tests.console.conftest import csrf, new_client
from tests.factories import account_by_number, balance_of, entries_of, meter_of, store_readings
from tests.identity.support import post


def _accrue(engine, number: str) -> int:
    """Two readings 1 kWh and 10 minutes apart, the last a minute ago: a charge accrued
    (0.5583 元), not yet posted."""
    meter = meter_of(engine, number).id
    at = utcnow() - dt.timedelta(minutes=11)
    store_readings(engine, meter, [(at, 1_000_000), (at + dt.timedelta(minutes=10), 1_001_000)])
    return meter


def test_closing_bills_the_final_reading_and_keeps_the_balance(console, engine, estate, settings):
    number = estate.a_accounts[0]  # 50.00 元
    meter = _accrue(engine, number)
    assert entries_of(engine, number, CHARGE) == []  # accrued, not posted
    assert balance_of(engine, number) == 5000 - 56
    client = console("admin")
    reply = client.post(f"/manage/accounts/{number}/close",
                        data={"settle": "carry", "reason": "住户搬走", "csrftoken": csrf(client)})
    assert reply.headers["location"].endswith("?saved=1")
    [charge] = entries_of(engine, number, CHARGE)
    assert charge.amount_fen == -56 and charge.energy_wh == 1_000
    assert balance_of(engine, number) == 5000 - 56
    page = client.get(f"/manage/accounts/{number}").text
    assert "已销户" in page and 'id="manual-cut"' not in page
    assert "account.close" in client.get("/manage/audit").text
    # no longer read: the worker drops the meter, and a reading in flight is neither stored
    # nor charged
    assert meter not in {m.meter_id for g in load_gateways(engine) for m in g.meters}
    later = utcnow()
    store_readings(engine, meter, [(later, 1_005_000)])
    assert len(entries_of(engine, number, CHARGE)) == 1
    assert meter_of(engine, number).last_energy_wh == 1_001_000
    # the resident can neither pay nor take emergency credit
    web = new_client(settings, engine)
    resident = web.get(f"/a/{number}")
    assert "本户已销户" in resident.text and "/topup" not in resident.text
    refused = post(web, f"/a/{number}/topup", {"amount": "50", "channel": "alipay"})
    assert refused.status_code == 409 and "本户已销户" in refused.text
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Order)).all() == []
    # reopened: read again, and charged from the register at closing
    client.post(f"/manage/accounts/{number}/reopen",
                data={"reason": "误操作", "csrftoken": csrf(client)})
    assert account_by_number(engine, number).closed_at is None
    assert meter in {m.meter_id for g in load_gateways(engine) for m in g.meters}
    store_readings(engine, meter, [(later + dt.timedelta(minutes=50), 1_005_000)])
    assert balance_of(engine, number) == 5000 - 56 - 223  # 4 kWh × 0.5583
    assert "account.reopen" in client.get("/manage/audit").text


def test_closing_with_a_refund_that_cannot_go_back_changes_nothing(console, engine, estate):
    number = estate.a_accounts[0]  # 50.00 元 opening balance: no paid order to refund through
    _accrue(engine, number)
    client = console("finance")
    reply = client.post(f"/manage/accounts/{number}/close",
                        data={"settle": "refund", "reason": "搬走", "csrftoken": csrf(client)})
    assert "error=" in reply.headers["location"]
    assert "only 0 fen can go back" in client.get(reply.headers["location"]).text
    assert account_by_number(engine, number).closed_at is None
    assert entries_of(engine, number, CHARGE) == []  # the final charge rolled back with it
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Refund)).all() == []


def test_closing_with_a_refund_gives_the_balance_back(console, engine, estate):
    number = estate.a_accounts[2]  # -5.00 元; a paid order of 30 元
    account = account_by_number(engine, number)
    from app.ledger.services import post_entry

    with transaction(engine) as s:
        s.add(Order(out_trade_no="FKPAIDCLOSE", account_id=account.id, amount_fen=3000,
                    channel="alipay", status="paid", provider_trade_no="2026T9",
                    paid_at=utcnow()))
        post_entry(s, account_id=account.id, amount_fen=3000, kind="topup",
                   idempotency_key="order:FKPAIDCLOSE")
    client = console("finance")
    client.post(f"/manage/accounts/{number}/close",
                data={"settle": "refund", "reason": "搬走", "csrftoken": csrf(client)})
    assert account_by_number(engine, number).closed_at is not None
    assert balance_of(engine, number) == 0
    with transaction(engine, read_only=True) as s:
        assert [(r.amount_fen, r.reason) for r in s.exec(select(Refund))] == [
            (2500, "account_closure")]


def test_who_may_close(console, engine, estate):
    mine, theirs = estate.a_accounts[0], estate.b_accounts[0]
    b1 = console("b1")
    assert b1.post(f"/manage/accounts/{mine}/close",
                   data={"settle": "carry", "reason": "x", "csrftoken": csrf(b1)}
                   ).status_code == 404
    admin = console("admin")
    no_reason = admin.post(f"/manage/accounts/{mine}/close",
                           data={"settle": "carry", "reason": " ", "csrftoken": csrf(admin)})
    assert "error=" in no_reason.headers["location"]
    assert account_by_number(engine, mine).closed_at is None
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == theirs)).one()
        close_account(s, account, by="t", reason="t", settle=CARRY)
    assert admin.post(f"/manage/accounts/{theirs}/restore",
                      data={"reason": "x", "csrftoken": csrf(admin)}
                      ).headers["location"].count("error=") == 1
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Reading)).all() == []
