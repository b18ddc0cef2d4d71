"""50 copies of one notification at once, over HTTP to the live server, each verified by the
provider's SDK: one credit, one restore queued, every copy acknowledged. On SQLite, and on
PostgreSQL with FEIKONG_TEST_DB=postgres (where the copies really race: the order's
conditional pending → paid decides)."""

import concurrent.futures

import httpx
import pytest
from sqlmodel import select

from app.commands.models import RESTORE, Command
from app.db import transaction
from app.orders.models import PAID, Order, RefusedNotification
from tests.factories import balance_of, entries_of
from tests.payflow import NOTIFY, WECHAT_NOTIFY, start_payment, start_wechat_payment

COPIES = 50


@pytest.fixture
def live(stack):
    """The real app served by uvicorn: the copies arrive over real connections."""
    stack.start_web()
    return stack


def alipay_copy(stack, number):
    sandbox = stack.app.state.providers.sandbox_alipay
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        pay = start_payment(client, sandbox, number)
    headers = {"content-type": "application/x-www-form-urlencoded"}
    return NOTIFY, headers, sandbox.encode_form(sandbox.build_notification(pay)), "success"


def wechat_copy(stack, number):
    standin = stack.app.state.providers.wechat_standin
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as client:
        order = start_wechat_payment(client, standin, number)
    standin.pay(order.out_trade_no)
    headers, body = standin.notification_for(order.out_trade_no)
    return WECHAT_NOTIFY, headers, body, ""


@pytest.mark.parametrize("make_copy", [alipay_copy, wechat_copy], ids=["alipay", "wechat"])
def test_fifty_copies_of_one_notification_at_once_credit_once(live, engine, cut_account,
                                                              make_copy):
    stack = live
    path, headers, body, ack = make_copy(stack, cut_account)

    def send(_):
        with httpx.Client(base_url=stack.base_url, timeout=30) as c:
            reply = c.post(path, content=body, headers=headers)
            return reply.status_code, reply.text

    with concurrent.futures.ThreadPoolExecutor(COPIES) as pool:
        replies = list(pool.map(send, range(COPIES)))

    assert replies == [(200, ack)] * COPIES
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert balance_of(engine, cut_account) == 4500
    with transaction(engine, read_only=True) as s:
        assert [o.status for o in s.exec(select(Order))] == [PAID]
        assert len(s.exec(select(Command).where(Command.action == RESTORE)).all()) == 1
        assert s.exec(select(RefusedNotification)).all() == []
