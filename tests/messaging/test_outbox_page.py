"""The sandbox as the web app serves it: create_app builds the messengers (app.state.messengers)
pointed at the stand-ins it mounts, and /sandbox/outbox shows what they received, newest first,
recipients masked; next to real merchant keys none of it exists."""

import httpx
import pytest
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings, use_settings
from payments.wechat_oauth import mask_openid
from standins.alipay_sandbox import generate_rsa_keypair
from standins.sms import outbox as sms_outbox
from standins.wechat_messages import outbox as wechat_outbox
from standins.wechat_oauth import new_openid
from tests.conftest import free_port

PHONE = "13812345678"


@pytest.fixture
def settings(database_url, tmp_path):
    """The sandbox with a var_dir (and so an outbox) of this test's own."""
    port = free_port()
    return use_settings(Settings(database_url=database_url, var_dir=tmp_path / "var",
                                 web_port=port, public_url=f"http://127.0.0.1:{port}"))


@pytest.fixture
def web(stack):
    stack.start_web()
    with httpx.Client(base_url=stack.base_url) as c:
        yield c


def test_the_app_sends_through_its_standins_and_the_outbox_page_shows_it(stack, web, settings):
    messengers = stack.app.state.messengers
    messengers.sms.send(PHONE, settings.sms_template_low_balance, ["101020", "3.50"])
    openid = new_openid()
    messengers.wechat.send_template(openid, settings.wechat_template_restored, {
        "character_string1": "101020", "time2": "2025-11-03 08:00", "amount3": "45.00元"},
        stack.base_url + "/a/101020")
    assert [m["phone"] for m in sms_outbox(settings.var_dir)] == [PHONE]
    assert [m["openid"] for m in wechat_outbox(settings.var_dir)] == [openid]

    page = web.get("/sandbox/outbox")
    assert page.status_code == 200 and "<h1>消息发件箱（沙箱）</h1>" in page.text
    wechat_at = page.text.index("恢复供电通知<br>户号：101020<br>恢复时间：2025-11-03 08:00")
    sms_at = page.text.index("【费控电费】您的户号101020电费余额为3.50元，已低于提醒金额，请及时充值。")
    assert wechat_at < sms_at  # newest first
    assert "微信模板消息 · " + mask_openid(openid) in " ".join(page.text.split())
    assert "短信 · 138****5678" in " ".join(page.text.split())
    assert PHONE not in page.text and openid not in page.text
    assert f'href="{stack.base_url}/a/101020"' in page.text

    only_sms = web.get("/sandbox/outbox", params={"channel": "sms"}).text
    assert "【费控电费】" in only_sms and "恢复供电通知" not in only_sms
    only_wechat = web.get("/sandbox/outbox", params={"channel": "wechat"}).text
    assert "【费控电费】" not in only_wechat and "恢复供电通知" in only_wechat
    english = web.get("/sandbox/outbox", params={"lang": "en"}).text
    assert "Message outbox (sandbox)" in english


def test_an_empty_outbox_says_so(web):
    page = web.get("/sandbox/outbox")
    assert page.status_code == 200 and "还没有消息" in page.text


def test_a_link_that_is_not_a_web_address_is_not_made_a_link(stack, web, settings):
    stack.app.state.messengers.wechat.send_template(
        new_openid(), settings.wechat_template_restored, {
            "character_string1": "101020", "time2": "2025-11-03 08:00", "amount3": "45.00元"},
        "javascript:alert(1)")
    page = web.get("/sandbox/outbox").text
    assert "恢复供电通知" in page and "javascript:" not in page


def test_next_to_real_merchant_keys_no_standin_and_no_outbox(settings, engine, tmp_path):
    private_pem, public_pem = generate_rsa_keypair()
    (tmp_path / "app.pem").write_text(private_pem)
    (tmp_path / "alipay.pem").write_text(public_pem)
    live = settings.model_copy(update={
        "alipay_app_id": "2021004100000001", "alipay_app_private_key_file": tmp_path / "app.pem",
        "alipay_public_key_file": tmp_path / "alipay.pem"})
    with TestClient(create_app(live, engine)) as c:
        assert c.app.state.messengers.sms is None and c.app.state.messengers.wechat is None
        for path in ("/sandbox/outbox", "/sandbox/sms/", "/sandbox/wechat/mp/cgi-bin/token",
                     "/sandbox/alipay/gateway.do", "/sandbox/wechat/h5"):
            assert c.get(path).status_code == 404, path
