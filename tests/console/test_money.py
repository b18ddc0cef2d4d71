"""Adjustments and refunds from the console: ledger entries with a reason, audited; the roles
that move money (estate administrators, finance), nobody else; never outside scope."""

from app.db import transaction, utcnow
from app.ledger.models import LedgerEntry
from app.orders.models import Order, Refund
from sqlmodel import select
from tests.console.conftest import csrf
from tests.factories import account_by_number, balance_of, entries_of


def test_finance_credits_an_adjustment_with_a_reason(console, engine, estate):
    number = estate.a_accounts[1]  # 3.00 元
    client = console("finance")
    token = csrf(client)
    refused = client.post(f"/manage/accounts/{number}/adjust",
                          data={"amount": "12.345", "direction": "credit", "reason": "抄错表",
                                "csrftoken": token})
    assert "金额应大于 0" in client.get(refused.headers["location"]).text
    client.post(f"/manage/accounts/{number}/adjust",
                data={"amount": "12.34", "direction": "credit", "reason": "抄错表，补回",
                      "csrftoken": token})
    assert balance_of(engine, number) == 300 + 1234
    [entry] = entries_of(engine, number, "adjustment")
    assert entry.amount_fen == 1234 and "抄错表，补回" in entry.memo
    assert "account.adjust" in client.get("/manage/audit").text


def test_b1_moves_no_money(console, engine, estate):
    number = estate.a_accounts[1]
    client = console("b1")
    reply = client.post(f"/manage/accounts/{number}/adjust",
                        data={"amount": "100", "direction": "credit", "reason": "x",
                              "csrftoken": csrf(client)})
    assert reply.status_code == 404 and balance_of(engine, number) == 300


def test_a_refund_is_recorded_against_the_paid_orders(console, engine, estate):
    number = estate.a_accounts[0]  # 50.00 元 opening; a paid order of 30 元
    account = account_by_number(engine, number)
    from app.ledger.services import post_entry

    with transaction(engine) as s:
        s.add(Order(out_trade_no="FKPAID0001", account_id=account.id, amount_fen=3000,
                    channel="alipay", status="paid", provider_trade_no="2026T1",
                    paid_at=utcnow()))
        post_entry(s, account_id=account.id, amount_fen=3000, kind="topup",
                   idempotency_key="order:FKPAID0001")
    client = console("admin")
    reply = client.post(f"/manage/accounts/{number}/refund",
                        data={"amount": "20", "reason": "decision", "note": "多充了",
                              "csrftoken": csrf(client)})
    assert "error" not in reply.headers["location"], client.get(reply.headers["location"]).text
    with transaction(engine, read_only=True) as s:
        refunds = [(r.amount_fen, s.get(Order, r.order_id).out_trade_no)
                   for r in s.exec(select(Refund))]
    assert refunds == [(2000, "FKPAID0001")]
    assert balance_of(engine, number) == 8000 - 2000
    assert "account.refund" in client.get("/manage/audit").text
    too_much = client.post(f"/manage/accounts/{number}/refund",
                           data={"amount": "500", "reason": "decision", "note": "全退",
                                 "csrftoken": csrf(client)})
    assert too_much.status_code == 303
    assert balance_of(engine, number) == 6000  # refused: nothing recorded


def test_no_adjustment_outside_scope(console, engine, estate):
    with transaction(engine, read_only=True) as s:
        before = len(s.exec(select(LedgerEntry)).all())
    client = console("admin")
    assert client.post("/manage/accounts/999999/adjust",
                       data={"amount": "1", "direction": "credit", "reason": "x",
                             "csrftoken": csrf(client)}).status_code == 404
    with transaction(engine, read_only=True) as s:
        assert len(s.exec(select(LedgerEntry)).all()) == before


def test_emergency_credit_on_a_resident_s_behalf(console, engine, estate):
    from app.commands.models import Command
    from app.estate.models import Account, Meter

    number = estate.a_accounts[2]  # -5.00 元, and cut
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        account.emergency_credit_fen = 2000
        meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
        meter.relay_open = True
        s.add_all([account, meter])
    finance, b1 = console("finance"), console("b1")
    assert finance.post(f"/manage/accounts/{number}/emergency",
                        data={"reason": "x", "csrftoken": csrf(finance)}).status_code == 404
    token = csrf(b1)
    b1.post(f"/manage/accounts/{number}/emergency", data={"reason": "住户来电", "csrftoken": token})
    assert balance_of(engine, number) == -500 + 2000
    with transaction(engine, read_only=True) as s:
        assert [c.action for c in s.exec(select(Command))] == ["restore"]
    again = b1.post(f"/manage/accounts/{number}/emergency",
                    data={"reason": "再来", "csrftoken": token})
    assert "was taken already" in b1.get(again.headers["location"]).text
    assert balance_of(engine, number) == 1500
    assert "account.emergency_credit" in b1.get("/manage/audit").text
