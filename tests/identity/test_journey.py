"""In a 360-px phone browser (Debian's chromium) with the pages' CSP in force: an unbound visitor
opens a household, signs in with the code the SMS stand-in delivered, binds it, accepts the
agreement and sees the whole page; no CSP violation on the way."""

from playwright.sync_api import expect

from tests.functional.conftest import phone  # noqa: F401 (fixture)
from tests.identity.conftest import last_code

HOLDER = "13812345678"


def test_sign_in_bind_and_accept_on_a_phone(live, engine, estate, gateway, phone):  # noqa: F811
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=2345, holder_name="李四")
    problems = []
    phone.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    phone.on("pageerror", lambda e: problems.append(str(e)))

    phone.goto(f"{live.base_url}/a/{number}")
    expect(phone.locator("#balance")).to_have_text("23.45")
    expect(phone.locator("#who")).to_contain_text("李*")
    assert phone.locator("#power").count() == 0 and "测试小区" not in phone.content()
    phone.get_by_role("link", name="登录并绑定此户号").click()

    expect(phone.get_by_role("heading", name="登录")).to_be_visible()
    phone.get_by_label("手机号").fill(HOLDER)
    phone.get_by_role("button", name="获取验证码").click()
    expect(phone.locator("#notice")).to_contain_text("验证码已发送至 138****5678")
    phone.get_by_label("短信验证码").fill(last_code(live.settings, HOLDER))
    phone.get_by_role("button", name="登录").click()

    expect(phone.get_by_role("heading", name="绑定户号")).to_be_visible()
    expect(phone.locator("#number-a")).to_have_value(number)
    phone.get_by_role("button", name="发送验证码到户主手机").click()  # the holder: bound at once

    expect(phone.get_by_role("heading", name="预付费用电协议")).to_be_visible()
    phone.get_by_role("button", name="我已阅读并同意").click()
    expect(phone.locator("h1")).to_have_text("测试小区 1-1-101")
    expect(phone.locator("#power")).to_be_visible()
    expect(phone.get_by_role("link", name="收支明细")).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    assert problems == [], problems
