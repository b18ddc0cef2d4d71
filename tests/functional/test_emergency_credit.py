"""应急用电 as a cut household meets it: the page offers the month's advance to a resident bound to
the household, taking it restores the supply (the relay read back from the simulated meter), a
second time in the month is refused and changes nothing, and the next top-up repays it before
anything else."""

import httpx
import pytest

from tests.conftest import wait_until
from tests.factories import balance_of, entries_of
from tests.functional.test_worker import commands, read_relay
from tests.identity.support import bound_resident, post
from tests.payflow import post_notification, start_payment


@pytest.fixture
def web(stack):
    stack.start_web()
    with httpx.Client(base_url=stack.base_url, follow_redirects=False, timeout=10) as c:
        yield c


def test_emergency_credit_restores_at_once_and_is_repaid_by_the_next_topup(stack, web, engine):
    stack.start_sim([[4]])
    number = stack.household(4, balance_fen=-500, relay_open=True, emergency_credit_fen=1000)
    stack.start_worker()
    bound_resident(engine, web, stack.settings, number)

    page = web.get(f"/a/{number}").text
    assert "已停电" in page and "使用应急用电 10.00 元" in page

    reply = post(web, f"/a/{number}/emergency")
    assert reply.status_code == 303 and reply.headers["location"].endswith(f"/a/{number}")
    wait_until(lambda: read_relay(stack, 0, 4) is False, timeout=10,
               message="the meter's relay did not close after the emergency credit")
    wait_until(lambda: [c.state for c in commands(engine)] == ["done"], timeout=5,
               message=lambda: f"restore not confirmed: {commands(engine)}")
    page = web.get(f"/a/{number}").text
    assert "供电中" in page
    assert "应急用电待还 10.00 元" in page
    assert "使用应急用电" not in page  # taken for this month
    assert balance_of(engine, number) == 500

    again = post(web, f"/a/{number}/emergency")
    assert again.status_code == 409
    assert "本月已使用过应急用电" in again.text
    assert [e.amount_fen for e in entries_of(engine, number, "emergency_credit")] == [1000]
    assert len(commands(engine)) == 1

    sandbox = stack.app.state.providers.sandbox_alipay
    pay = start_payment(web, sandbox, number, yuan="50")
    assert post_notification(web, sandbox, sandbox.build_notification(pay)).text == "success"
    assert [e.amount_fen for e in entries_of(engine, number, "emergency_credit")] == [1000, -1000]
    assert [e.amount_fen for e in entries_of(engine, number, "topup")] == [5000]
    assert balance_of(engine, number) == 4500  # -5.00 + 50.00: the advance is paid back
    page = web.get(f"/a/{number}").text
    assert "应急用电待还" not in page and "45.00" in page


def test_a_small_topup_repays_what_it_can_and_the_threshold_sees_the_rest(stack, web, engine):
    """-5.00 元 and 10.00 元 advanced (5.00 元); a 3.00 元 top-up repays 3.00 and leaves 7.00 owed,
    the balance still 5.00: the supply stays on, the next top-up repays the rest."""
    stack.start_sim([[5]])
    number = stack.household(5, balance_fen=-500, relay_open=True, emergency_credit_fen=1000)
    bound_resident(engine, web, stack.settings, number)
    assert post(web, f"/a/{number}/emergency").status_code == 303
    sandbox = stack.app.state.providers.sandbox_alipay
    pay = start_payment(web, sandbox, number, yuan="3")
    assert post_notification(web, sandbox, sandbox.build_notification(pay)).text == "success"
    assert [e.amount_fen for e in entries_of(engine, number, "emergency_credit")] == [1000, -300]
    assert balance_of(engine, number) == 500
    assert "应急用电待还 7.00 元" in web.get(f"/a/{number}").text


def test_emergency_credit_not_offered_is_refused_and_changes_nothing(stack, web, engine):
    stack.start_sim([[6]])
    number = stack.household(6, balance_fen=-500, relay_open=True)  # emergency_credit_fen 0
    bound_resident(engine, web, stack.settings, number)
    assert "应急用电" not in web.get(f"/a/{number}").text
    reply = post(web, f"/a/{number}/emergency")
    assert reply.status_code == 409 and "本户未开通应急用电" in reply.text
    assert entries_of(engine, number, "emergency_credit") == []
    assert commands(engine) == []
    assert balance_of(engine, number) == -500


def test_emergency_credit_for_an_unknown_account_is_a_404(web, engine):
    reply = post(web, "/a/999999/emergency")
    assert reply.status_code == 404 and "未找到该户号" in reply.text


def test_a_household_with_money_is_not_offered_emergency_credit(stack, web, engine):
    stack.start_sim([[7]])
    number = stack.household(7, balance_fen=2000, relay_open=False, emergency_credit_fen=1000)
    bound_resident(engine, web, stack.settings, number)
    assert "使用应急用电" not in web.get(f"/a/{number}").text


def test_a_cut_household_takes_emergency_credit_on_a_phone(stack, engine, phone):
    """The journey in a 360-px browser: the offer is on screen, one tap restores the supply."""
    from app.resident.identity import SESSION_COOKIE, session_value
    from tests.functional.conftest import ARTIFACTS
    from tests.identity.support import bind, resident

    stack.start_sim([[8]], relay_delay_s=0.2)
    number = stack.household(8, balance_fen=-500, relay_open=True, emergency_credit_fen=1000)
    stack.start_web()
    stack.start_worker()
    rid = resident(engine)
    bind(engine, rid, number)
    phone.context.add_cookies([{"name": SESSION_COOKIE, "url": stack.base_url,
                                "value": session_value(stack.settings.secret_key, rid)}])
    phone.goto(f"{stack.base_url}/a/{number}")
    button = phone.get_by_role("button", name="使用应急用电 10.00 元")
    box = button.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360  # nothing overflows
    button.click()
    # a selector, not wait_for_function: the page's CSP (no 'unsafe-eval') refuses evaluated text
    phone.wait_for_selector("#power:has-text('供电中')", timeout=15_000)
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=str(ARTIFACTS / "emergency-credit-360.png"), full_page=True)
    assert "应急用电待还 10.00 元" in phone.inner_text("#status")
    assert read_relay(stack, 0, 8) is False
