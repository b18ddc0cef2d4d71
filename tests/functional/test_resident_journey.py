"""Issue 15's journey, in Debian's chromium at 360×740 on the live system (simulated meter, worker,
web, SMS stand-in): a resident signs in with the code the SMS stand-in delivered, binds the cut
household, accepts the agreement, sees what brings the power back, pays it and watches the power
return; opens November's bill and finds the ledger's figures; reads the usage chart's table;
switches language on the top-up result. An unbound visitor may pay for the household but opens
none of its pages; POSTs without the CSRF token are refused."""

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from app.billing.services import insert_entries
from app.db import transaction, utcnow
from app.estate.models import Account, DailyFrozen, Meter
from app.ledger.models import ADJUSTMENT, OPENING, LedgerEntry
from app.tariffs import CHINA_TZ
from standins.sms import clear_outbox
from tests.factories import balance_of, entries_of
from tests.functional.test_worker import read_relay
from tests.identity.conftest import last_code

HOLDER = "13812345678"  # the factory's registered phone


def _local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CHINA_TZ).astimezone(dt.timezone.utc)


@pytest.fixture
def household(stack, engine):
    """A household cut at −5.00 元 whose November has an opening (+20.00) and an adjustment
    (−25.00), and whose meter was frozen at 3.456 kWh on 28 November."""
    stack.start_sim([[7]], relay_delay_s=0.2)
    number = stack.household(7, balance_fen=0, relay_open=True)
    with transaction(engine) as s:
        account_id, meter_id = s.execute(sa.select(Account.id, Meter.id).join(
            Meter, Meter.account_id == Account.id).where(Account.number == number)).one()
        insert_entries(s.connection(), [(account_id, 2000, OPENING, f"opening:{number}",
                                         "opening balance", None)],
                       created_at=_local(2026, 11, 2, 9))
        insert_entries(s.connection(), [(account_id, -2500, ADJUSTMENT, f"adj:{number}",
                                         "meter replaced: the old meter's last reading", None)],
                       created_at=_local(2026, 11, 20, 15))
        s.add(DailyFrozen(meter_id=meter_id, day=dt.date(2026, 11, 28), opening_wh=1000,
                          register_wh=4456, read_at=utcnow(), used_wh=3456))
    from app.messaging_setup import build_messengers

    stack.start_web()
    stack.app.state.messengers = build_messengers(stack.settings)
    clear_outbox(stack.settings.var_dir)
    stack.start_worker()
    return number


def _november_ledger(engine, number: str) -> tuple[int, int]:
    """(the balance at the end of November, November's change), from the ledger."""
    e = LedgerEntry.__table__
    with transaction(engine, read_only=True) as s:
        account_id = s.execute(sa.select(Account.id).where(Account.number == number)).scalar()
        total = lambda *where: int(s.execute(sa.select(sa.func.coalesce(sa.func.sum(  # noqa: E731
            e.c.amount_fen), 0)).where(e.c.account_id == account_id, *where)).scalar())
        end = total(e.c.created_at < _local(2026, 12, 1))
        change = total(e.c.created_at >= _local(2026, 11, 1), e.c.created_at < _local(2026, 12, 1))
    return end, change


def test_a_resident_binds_pays_what_is_needed_and_reads_the_bill(stack, engine, household, phone):
    page, number = phone, household
    base = stack.base_url

    # sign in with the code the SMS stand-in delivered, bind (the holder's phone), accept
    page.goto(f"{base}/a/{number}")
    expect(page.locator("#balance")).to_have_text("-5.00")
    page.get_by_role("link", name="登录并绑定此户号").click()
    page.get_by_label("手机号").fill(HOLDER)
    page.get_by_role("button", name="获取验证码").click()
    expect(page.locator("#notice")).to_contain_text("验证码已发送")
    page.get_by_label("短信验证码").fill(last_code(stack.settings, HOLDER))
    page.get_by_role("button", name="登录").click()
    page.get_by_role("button", name="发送验证码到户主手机").click()
    page.get_by_role("button", name="我已阅读并同意").click()

    # cut: why, and the amount that brings the power back, preset
    expect(page.locator("#power")).to_have_text("已停电")
    expect(page.locator("#to-restore")).to_have_text("充值 5.01 元即可恢复供电")
    expect(page.locator('input[name="amount"][value="6"]')).to_be_checked()
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.locator("#pay-amount")).to_contain_text("6.00")  # the sandbox cashier
    page.get_by_role("button", name="确认付款").click()
    expect(page.locator("#order-state")).to_have_text("已到账 6.00 元", timeout=10_000)
    expect(page.locator("#power")).to_have_text("供电中", timeout=10_000)
    expect(page.locator("#balance")).to_have_text("1.00")
    assert read_relay(stack, 0, 7) is False  # the meter's relay reads closed: power on
    assert [e.amount_fen for e in entries_of(engine, number, "topup")] == [600]

    # the language switch on the top-up result keeps the page and its order
    page.get_by_role("link", name="English").click()
    expect(page.locator("#order-state")).to_have_text("¥6.00 received")
    assert "order=" in page.url
    page.get_by_role("link", name="中文").click()

    # November's bill: the ledger's figures
    end, change = _november_ledger(engine, number)
    assert (end, change) == (-500, -500)
    page.goto(f"{base}/a/{number}/bills/2026-11")
    expect(page.locator("#closing")).to_contain_text("-5.00")
    expect(page.locator("#opening")).to_contain_text("0.00")
    expect(page.locator("#sum-adjustments")).to_contain_text("-25.00")

    # the usage chart's table: 28 November, 3.456 kWh
    page.goto(f"{base}/a/{number}/usage")
    page.get_by_text("查看数据表").first.click()
    row = page.locator("#daily-table tr", has_text="2026-11-28")
    expect(row).to_contain_text("3.456")


def test_an_unbound_visitor_pays_but_opens_nothing_else(stack, engine, household, phone):
    page, number = phone, household
    page.goto(f"{stack.base_url}/a/{number}")
    assert page.locator("#power").count() == 0 and page.locator("#emergency").count() == 0
    page.get_by_text("20 元", exact=True).click()
    page.get_by_role("button", name="支付宝支付").click()
    page.get_by_role("button", name="确认付款").click()
    expect(page.locator("#order-state")).to_have_text("已到账 20.00 元", timeout=10_000)
    assert balance_of(engine, number) == 1500
    for path in ("history", "bills", "bills/2026-11", "usage", "notices"):
        reply = page.goto(f"{stack.base_url}/a/{number}/{path}")
        assert reply.status == 404, path
        expect(page.locator("h1")).to_have_text("未找到该户号")  # as for a 户号 that is no one's
    with httpx.Client(base_url=stack.base_url) as client:  # no CSRF token: refused, unchanged
        assert client.post(f"/a/{number}/emergency").status_code == 403
        assert client.post(f"/a/{number}/topup", data={"amount": "50", "channel": "alipay"}
                           ).status_code == 403
    assert [e.amount_fen for e in entries_of(engine, number, "topup")] == [2000]
