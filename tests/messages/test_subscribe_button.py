"""The subscribe button (订阅通知) on the bound resident's pages: the JS-SDK config our server signs
with the jsapi_ticket the WeChat stand-in hands out (wechatpy's client, over HTTP), the button
shown only where it means something, and the sandbox's grant that lets a cut notice go as a
subscription notice instead of the SMS fallback. The real app served on loopback; a browser
(httpx, and Debian's chromium with the pages' CSP in force) signed in as the resident."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest
from playwright.sync_api import expect
from starlette.responses import Response

from app.messages.models import SENT, SMS, WECHAT_SUBSCRIBE
from app.notices.models import PAYMENT_RECEIVED, POWER_CUT
from app.resident.security import CSP
from app.resident.subscribe import SubscribeOffer, with_offer_csp
from standins import wechat_messages as wechat_standin
from standins.wechat_pay_sandbox import SANDBOX_APPID
from app.resident.identity import SESSION_COOKIE, session_value
from tests.factories import account_by_number
from tests.functional.conftest import phone  # noqa: F401 (fixture)
from tests.identity.support import bind, resident, sign_in
from tests.messages.conftest import local, openid

TEN = local("2026-12-03", "10:00")
SUB_IDS = ("sandbox-sub-low-balance,sandbox-sub-exhausted,sandbox-sub-cut,"
           "sandbox-sub-restored,sandbox-sub-payment,sandbox-sub-emergency")
TAG = re.compile(r'<wx-open-subscribe template="([^"]*)" id="subscribe-btn">')


@pytest.fixture
def browser(world, stack):
    with httpx.Client(base_url=stack.base_url, follow_redirects=False, timeout=15) as c:
        yield c


def bound(world, browser, number: str, *, oid: str | None, phone: str = "13900000031",
          estate_mode: str = "subscribe") -> int:
    world.estate(wechat_messages=estate_mode)
    world.household(number=number, holder_phone="")
    rid = resident(world.engine, phone, oid)
    bind(world.engine, rid, number)
    sign_in(browser, world.settings, rid)
    return rid


def sha1(ticket: str, nonce: str, timestamp, url: str) -> str:
    return hashlib.sha1(f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}"
                        f"&url={url}".encode()).hexdigest()


def config_for(browser, url: str) -> dict:
    reply = browser.get("/wechat/jsapi-config", params={"url": url})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_config_is_signed_as_wechat_checks_it(world, browser, stack):
    bound(world, browser, "101030", oid=openid(30))
    url = f"{stack.base_url}/a/101030?x=1"
    config = config_for(browser, url)
    [ticket] = wechat_standin.jsapi_tickets(world.var_dir)  # fetched with the access token
    assert config["appId"] == SANDBOX_APPID
    assert re.fullmatch(r"[A-Za-z0-9]{16}", config["nonceStr"])
    assert isinstance(config["timestamp"], int)
    assert config["signature"] == sha1(ticket, config["nonceStr"], config["timestamp"], url)
    assert browser.get("/wechat/jsapi-config", params={"url": url}).headers[
        "cache-control"] == "no-store"
    # the ticket is kept (one getticket for both), each config has its own nonce
    again = config_for(browser, f"{stack.base_url}/a/101030/notices")
    assert wechat_standin.jsapi_tickets(world.var_dir) == [ticket]
    assert again["signature"] == sha1(ticket, again["nonceStr"], again["timestamp"],
                                      f"{stack.base_url}/a/101030/notices")


@pytest.mark.parametrize("url", ["https://evil.example/a/101031", "{base}/a/101031#top", "",
                                 "{base}/a/101031\n", "{base}" + "/a" * 600])
def test_a_page_not_of_ours_gets_no_config(world, browser, stack, url):
    bound(world, browser, "101031", oid=openid(31))
    reply = browser.get("/wechat/jsapi-config", params={"url": url.format(base=stack.base_url)})
    assert reply.status_code == 400
    assert wechat_standin.jsapi_tickets(world.var_dir) == []


def test_no_config_without_a_signed_in_resident(world, stack):
    world.household(number="101032")
    with httpx.Client(base_url=stack.base_url, timeout=15) as stranger:
        reply = stranger.get("/wechat/jsapi-config",
                             params={"url": f"{stack.base_url}/a/101032"})
    assert reply.status_code == 404
    assert wechat_standin.jsapi_tickets(world.var_dir) == []


def test_the_button_on_the_account_and_notices_pages_of_a_subscribe_estate(world, browser):
    bound(world, browser, "101033", oid=openid(33))
    for path in ("/a/101033", "/a/101033/notices"):
        page = browser.get(path)
        assert page.status_code == 200
        assert TAG.search(page.text).group(1) == SUB_IDS
        assert '<script type="text/wxtag-template">' in page.text
        assert "订阅电费提醒" in page.text and 'data-done="已订阅提醒"' in page.text
        # the sandbox plays WeChat: its bridge, not WeChat's JS-SDK, and the CSP unchanged
        assert "sandbox-wx-jssdk" in page.text and "wechat-subscribe" in page.text
        assert "res.wx.qq.com" not in page.text
        assert page.headers["content-security-policy"] == CSP


def test_no_button_for_a_template_estate(world, browser):
    bound(world, browser, "101034", oid=openid(34), estate_mode="template")
    for path in ("/a/101034", "/a/101034/notices"):
        page = browser.get(path)
        assert page.status_code == 200 and "1-1-101" in page.text
        assert "wx-open-subscribe" not in page.text and "wechat-subscribe" not in page.text


def test_no_button_for_a_resident_without_openid_nor_a_visitor(world, browser, stack):
    bound(world, browser, "101035", oid=None)
    page = browser.get("/a/101035")
    assert page.status_code == 200 and "解除绑定本户" in page.text  # the bound page
    assert "wx-open-subscribe" not in page.text
    with httpx.Client(base_url=stack.base_url, timeout=15) as visitor:
        public = visitor.get("/a/101035")
    assert public.status_code == 200 and "wx-open-subscribe" not in public.text


def grant(browser, stack, config: dict, url: str, templates: list[str]):
    return browser.post("/sandbox/wechat/jssdk/subscribe",
                        json={"config": config, "url": url, "templates": templates})


def test_after_the_grant_a_cut_goes_as_a_subscription_notice_not_sms(world, browser, stack):
    wechat_standin.set_defaults(world.var_dir, subscribed=False)  # nobody granted anything yet
    bound(world, browser, "101036", oid=openid(36), phone="13900000036")
    account = account_by_number(world.engine, "101036")

    world.notice(account, PAYMENT_RECEIVED, TEN, amount_fen=5_000)  # before: 43101, an SMS
    world.jobs.sweep(TEN)
    assert [m["phone"] for m in world.sms()] == ["13900000036"] and world.wechat() == []

    url = f"{stack.base_url}/a/101036"
    config = config_for(browser, url)
    assert browser.post("/sandbox/wechat/jssdk/config",
                        json={"config": config, "url": url}).json() == {"errMsg": "config:ok"}
    reply = grant(browser, stack, config, url, SUB_IDS.split(","))
    assert reply.status_code == 200 and reply.json()["errMsg"] == "subscribe:ok"
    details = json.loads(reply.json()["subscribeDetails"])
    assert json.loads(details["sandbox-sub-cut"]) == {"status": "accept"}

    world.notice(account, POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    [notice] = world.wechat()
    assert (notice["kind"], notice["openid"], notice["template_id"]) == (
        "subscribe", openid(36), "sandbox-sub-cut")
    assert "停电通知" in notice["text"] and "101036" in notice["text"]
    assert len(world.sms()) == 1  # only the payment's, from before the grant
    rows = [(m.channel, m.status) for m in world.messages(account) if m.status == SENT]
    assert rows == [(SMS, SENT), (WECHAT_SUBSCRIBE, SENT)]


def test_the_sandbox_refuses_a_forged_config_and_a_resident_without_openid(world, browser,
                                                                            stack):
    wechat_standin.set_defaults(world.var_dir, subscribed=False)
    bound(world, browser, "101037", oid=None)
    url = f"{stack.base_url}/a/101037"
    config = config_for(browser, url)
    forged = {**config, "signature": "0" * 40}
    reply = browser.post("/sandbox/wechat/jssdk/config", json={"config": forged, "url": url})
    assert reply.status_code == 403 and "invalid signature" in reply.json()["errMsg"]
    other_page = browser.post("/sandbox/wechat/jssdk/config",
                              json={"config": config, "url": url + "/notices"})
    assert other_page.status_code == 403
    assert grant(browser, stack, forged, url, ["sandbox-sub-cut"]).status_code == 403
    assert grant(browser, stack, config, url, ["not-a-template"]).status_code == 400
    no_openid = grant(browser, stack, config, url, ["sandbox-sub-cut"])
    assert no_openid.status_code == 403 and no_openid.json()["errMsg"].startswith(
        "subscribe:fail")


def test_tapping_the_button_in_a_phone_browser(world, stack, phone):  # noqa: F811
    """Chromium at 360 px with the page's CSP: the sandbox's bridge draws the open tag's button
    once our config's signature is checked; a tap grants, the page says 已订阅提醒, and the next
    cut goes as a subscription notice, not an SMS. No CSP violation or script error."""
    wechat_standin.set_defaults(world.var_dir, subscribed=False)
    world.estate(wechat_messages="subscribe")
    world.household(number="101038", holder_phone="")
    rid = resident(world.engine, "13900000038", openid(38))
    bind(world.engine, rid, "101038")
    phone.context.add_cookies([{"name": SESSION_COOKIE, "url": stack.base_url,
                                "value": session_value(world.settings.secret_key, rid)}])
    problems = []
    phone.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    phone.on("pageerror", lambda e: problems.append(str(e)))

    phone.goto(f"{stack.base_url}/a/101038")
    button = phone.get_by_role("button", name="订阅电费提醒")  # in the tag's shadow root
    expect(button).to_be_visible()
    expect(phone.locator("#subscribe-state")).to_have_text("")
    button.click()
    expect(phone.locator("#subscribe-state")).to_have_text("已订阅提醒")
    assert problems == [], problems

    world.notice(account_by_number(world.engine, "101038"), POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    assert [(m["kind"], m["openid"]) for m in world.wechat()] == [("subscribe", openid(38))]
    assert world.sms() == []


def test_inside_wechat_the_real_js_sdk_is_loaded_and_allowed_on_that_page_only(world):
    """Outside the sandbox (real WeChat): the partial loads jweixin-1.6.0.js, not the bridge, and
    that page's reply allows exactly WeChat's origin in script-src; other pages keep the CSP."""
    offer = SubscribeOffer(("tplA", "tplB"), sandbox=False)
    html = world.app.state.templates.env.get_template("resident/_subscribe.html").render(
        subscribe=offer)
    assert '<wx-open-subscribe template="tplA,tplB" id="subscribe-btn">' in html
    assert '<script src="https://res.wx.qq.com/open/js/jweixin-1.6.0.js"></script>' in html
    assert "sandbox-wx-jssdk" not in html
    csp = with_offer_csp(Response(), offer).headers["content-security-policy"]
    assert "script-src 'self' https://res.wx.qq.com;" in csp
    assert csp.replace(" https://res.wx.qq.com", "") == CSP
    assert "content-security-policy" not in with_offer_csp(Response(), None).headers
    sandbox = SubscribeOffer(("tplA",), sandbox=True)
    assert "content-security-policy" not in with_offer_csp(Response(), sandbox).headers
