"""Refunds through the live app's sandbox: a manager gives (part of) an unspent balance back;
the refund is a ledger entry at once, confirmed by the provider's refund notice or by a query."""

import pytest
from sqlmodel import select

from app.cli import main as feikong
from app.db import transaction
from app.ledger.models import OPENING
from app.ledger.services import post_entry
from app.orders.jobs import check_refunds
from app.orders.models import (REFUND_FAILED, REFUND_SUCCEEDED, REFUND_SUBMITTED, Order, Refund,
                               RefusedNotification)
from app.orders.refunds import RefundRefused, RefundRequest, refund_balance
from tests.app.test_orders_jobs import (CHANNELS, later, pay, providers,  # noqa: F401
                                        set_behaviour, web)
from tests.conftest import wait_until
from tests.factories import account_by_number, balance_of, entries_of


def refunds(engine) -> list[Refund]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(Refund).order_by(Refund.id)))


def ask(number: str, amount_fen: int | None, reason: str = "decision") -> RefundRequest:
    return RefundRequest(number, amount_fen, reason, requested_by="王经理", note="住户申请")


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refund_is_a_ledger_entry_confirmed_by_the_providers_notice(
        web, providers, settings, engine, cut_account, channel):
    no = pay(web, providers, channel, cut_account, "50")  # balance -5.00 + 50.00

    made = refund_balance(engine, providers, settings, ask(cut_account, 2000))

    assert [(r.channel, r.amount_fen) for r in made] == [(channel, 2000)]
    assert [e.amount_fen for e in entries_of(engine, cut_account, "refund")] == [-2000]
    assert balance_of(engine, cut_account) == 2500  # at once: it cannot be spent meanwhile
    wait_until(lambda: refunds(engine)[0].status == REFUND_SUCCEEDED,
               message=lambda: f"not confirmed: {refunds(engine)}")
    with transaction(engine, read_only=True) as s:
        order = s.exec(select(Order).where(Order.out_trade_no == no)).one()
        assert refunds(engine)[0].order_id == order.id
        assert s.exec(select(RefusedNotification)).all() == []
    assert balance_of(engine, cut_account) == 2500


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refund_whose_notice_never_comes_is_confirmed_by_query(
        web, providers, settings, engine, cut_account, channel):
    pay(web, providers, channel, cut_account, "50")
    set_behaviour(web, mode="never")

    refund_balance(engine, providers, settings, ask(cut_account, 1000))
    assert refunds(engine)[0].status == REFUND_SUBMITTED

    assert check_refunds(engine, providers, settings, now=later(0.5)) == {}  # not yet due
    assert check_refunds(engine, providers, settings, now=later(2)) == {"confirmed": 1}
    assert refunds(engine)[0].status == REFUND_SUCCEEDED
    assert balance_of(engine, cut_account) == 3500


def test_account_closure_refunds_the_whole_balance_over_both_providers(
        web, providers, settings, engine, cut_account):
    alipay = pay(web, providers, "alipay", cut_account, "30")
    wechat = pay(web, providers, "wechat", cut_account, "20")  # -5 + 30 + 20 = 45.00

    made = refund_balance(engine, providers, settings, ask(cut_account, None, "account_closure"))

    assert [(r.channel, r.amount_fen) for r in made] == [("wechat", 2000), ("alipay", 2500)]
    assert balance_of(engine, cut_account) == 0
    wait_until(lambda: {r.status for r in refunds(engine)} == {REFUND_SUCCEEDED})
    assert providers.wechat_standin.orders[wechat].refunded_fen == 2000  # the newest first
    assert providers.alipay_standin.trades[alipay].refunded_fen == 2500


@pytest.mark.parametrize("amount_fen, message", [
    (5000, "more than the unspent balance"),
    (0, "must be positive"),
])
def test_a_refund_beyond_the_balance_is_refused_and_records_nothing(
        web, providers, settings, engine, cut_account, amount_fen, message):
    pay(web, providers, "alipay", cut_account, "30")
    with pytest.raises(RefundRefused, match=message):
        refund_balance(engine, providers, settings, ask(cut_account, amount_fen))
    assert refunds(engine) == [] and entries_of(engine, cut_account, "refund") == []


def test_money_that_came_in_no_provider_cannot_be_refunded_through_one(
        web, providers, settings, engine, cut_account):
    pay(web, providers, "wechat", cut_account, "10")  # -5 + 10 = 5.00, all of it from WeChat
    account_id = account_by_number(engine, cut_account).id
    with transaction(engine) as s:  # 20.00 paid at the office, in cash
        post_entry(s, account_id=account_id, amount_fen=2000, kind=OPENING,
                   idempotency_key="cash:1")
    with pytest.raises(RefundRefused, match="only 1000 fen can go back"):
        refund_balance(engine, providers, settings, ask(cut_account, 2500))
    assert refunds(engine) == []


def test_a_refund_the_provider_refuses_gives_the_money_back(
        web, providers, settings, engine, cut_account):
    no = pay(web, providers, "alipay", cut_account, "30")
    trade = providers.alipay_standin.trades[no]
    trade.refunded_fen = trade.amount_fen  # refunded meanwhile at the merchant's own console

    [refund] = refund_balance(engine, providers, settings, ask(cut_account, 1000))

    assert refund.status == REFUND_FAILED and "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL" in refund.detail
    assert [e.amount_fen for e in entries_of(engine, cut_account, "refund")] == [-1000, 1000]
    assert balance_of(engine, cut_account) == 2500


def test_feikong_refund_on_the_command_line(web, providers, settings, engine, cut_account,
                                            capsys):
    pay(web, providers, "wechat", cut_account, "50")
    assert feikong(["refund", cut_account, "12.50", "--reason", "decision", "--by", "王经理"]) == 0
    assert "12.50 元" in capsys.readouterr().out
    assert balance_of(engine, cut_account) == 3250
    assert feikong(["refund", cut_account, "999", "--reason", "decision", "--by", "王经理"]) == 1
    assert "more than the unspent balance" in capsys.readouterr().err


def test_feikong_refund_for_account_closure_closes_the_account(web, providers, settings, engine,
                                                               cut_account, capsys):
    pay(web, providers, "wechat", cut_account, "50")  # -5 + 50 = 45.00
    assert feikong(["refund", cut_account, "10", "--reason", "account_closure",
                    "--by", "王经理"]) == 2  # a closure refunds everything
    assert feikong(["refund", cut_account, "--all", "--reason", "account_closure",
                    "--by", "王经理", "--note", "搬走了"]) == 0
    assert f"account {cut_account} closed" in capsys.readouterr().out
    assert balance_of(engine, cut_account) == 0
    assert account_by_number(engine, cut_account).closed_at is not None
    wait_until(lambda: {r.status for r in refunds(engine)} == {REFUND_SUCCEEDED})
    assert feikong(["account", "close", cut_account, "--settle", "carry", "--by", "王经理",
                    "--reason", "again"]) == 1
    assert "closed already" in capsys.readouterr().err
    assert feikong(["account", "reopen", cut_account, "--by", "王经理", "--reason", "回来了"]) == 0
    assert account_by_number(engine, cut_account).closed_at is None
