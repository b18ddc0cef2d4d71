"""WeChat Pay through the real app: the top-up calls the stand-in of WeChat's API mounted in the
live server, the sandbox signs and seals notifications, wechatpayv3 verifies them."""

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from app.commands.models import RESTORE, Command
from app.db import transaction
from app.main import create_app
from app.orders.models import PAID, PENDING, Order, RefusedNotification
from standins.alipay_sandbox import generate_rsa_keypair
from standins.wechat_pay_sandbox import ensure_wechat_sandbox_keys
from tests.factories import balance_of, entries_of
from tests.payflow import WECHAT_NOTIFY, post_wechat_notification, start_wechat_payment
from tests.identity.support import post

IN_WECHAT = ("Mozilla/5.0 (Linux; Android 13; V2183A) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Chrome/116.0 Mobile Safari/537.36 MicroMessenger/8.0.47.2560 NetType/WIFI")


@pytest.fixture
def web(stack):
    """The real app served by uvicorn (no worker): WeChat's `start` needs a server to call."""
    stack.start_web()
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as c:
        yield c


@pytest.fixture
def standin(stack, web):
    return stack.app.state.providers.wechat_standin


@pytest.fixture
def paid_order(web, standin, cut_account):
    """A WeChat order the resident paid in the stand-in; no notification delivered yet."""
    order = start_wechat_payment(web, standin, cut_account)
    standin.pay(order.out_trade_no)
    return order


def orders(engine):
    with transaction(engine) as s:
        return s.exec(select(Order)).all()


def restores(engine):
    with transaction(engine) as s:
        return s.exec(select(Command).where(Command.action == RESTORE)).all()


def test_valid_notification_credits_once_and_queues_restore(web, standin, engine, cut_account,
                                                            paid_order):
    headers, body = standin.notification_for(paid_order.out_trade_no)
    first = post_wechat_notification(web, headers, body)
    again = post_wechat_notification(web, headers, body)  # the duplicate is acknowledged
    assert (first.status_code, first.text, again.status_code) == (200, "", 200)
    assert balance_of(engine, cut_account) == 4500
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert [(o.channel, o.status) for o in orders(engine)] == [("wechat", PAID)]
    held = standin.orders[paid_order.out_trade_no]
    assert orders(engine)[0].provider_trade_no == held.transaction_id
    assert len(restores(engine)) == 1


def _altered(sandbox, order):
    headers, body = sandbox.build_notification(order.out_trade_no, order.amount_fen)
    altered = body.replace("支付成功".encode(), "付款成功".encode())  # the envelope's summary
    assert altered != body
    return headers, altered


BAD = {
    "forged_signature": (lambda sb, o: sb.build_notification(
        o.out_trade_no, o.amount_fen, private_pem=generate_rsa_keypair()[0]), "bad_signature"),
    "wrong_appid": (lambda sb, o: sb.build_notification(
        o.out_trade_no, o.amount_fen, appid="wx00000000000other"), "wrong_app_id"),
    "wrong_mchid": (lambda sb, o: sb.build_notification(
        o.out_trade_no, o.amount_fen, mchid="1900009999"), "wrong_mchid"),
    "wrong_amount": (lambda sb, o: sb.build_notification(o.out_trade_no, 1), "amount_mismatch"),
    "unknown_order": (lambda sb, o: sb.build_notification("FKNOSUCHORDER", o.amount_fen),
                      "unknown_order"),
    "stale_timestamp": (lambda sb, o: sb.build_notification(
        o.out_trade_no, o.amount_fen, timestamp=int(time.time()) - 301), "stale_timestamp"),
    "altered_after_signing": (_altered, "bad_signature"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_notification_is_refused_recorded_and_changes_nothing(web, standin, engine,
                                                                  cut_account, paid_order, case):
    build, reason = BAD[case]
    headers, body = build(standin.sandbox, paid_order)
    reply = post_wechat_notification(web, headers, body)
    assert 400 <= reply.status_code < 500
    assert reply.json() == {"code": "FAIL", "message": "失败"}  # nothing about why
    assert balance_of(engine, cut_account) == -500
    assert [o.status for o in orders(engine)] == [PENDING] and restores(engine) == []
    with transaction(engine) as s:
        refused = s.exec(select(RefusedNotification)).all()
    assert [(r.channel, r.reason) for r in refused] == [("wechat", reason)]


def test_a_body_that_is_not_a_notification_is_refused(web, engine, cut_account):
    reply = web.post(WECHAT_NOTIFY, content=b"\xff not json",
                     headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["code"] == "FAIL"
    with transaction(engine) as s:
        assert [r.reason for r in s.exec(select(RefusedNotification))] == ["malformed"]


def test_refund_notice_without_appid_is_acknowledged_and_changes_nothing(web, standin, engine,
                                                                        cut_account, paid_order):
    post_wechat_notification(web, *standin.notification_for(paid_order.out_trade_no))
    refund = standin.sandbox.build_notification(paid_order.out_trade_no, 5000,
                                                event_type="REFUND.SUCCESS", refund_fen=2000)
    assert post_wechat_notification(web, *refund).status_code == 200
    assert balance_of(engine, cut_account) == 4500
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]


def test_refund_notice_of_another_merchant_is_refused(web, standin, engine, paid_order):
    refund = standin.sandbox.build_notification(paid_order.out_trade_no, 5000, mchid="1900009999",
                                                event_type="REFUND.SUCCESS")
    assert post_wechat_notification(web, *refund).status_code == 400
    with transaction(engine) as s:
        assert [r.reason for r in s.exec(select(RefusedNotification))] == ["wrong_mchid"]


# -- the top-up and the sandbox cashier ---------------------------------------------------------

def test_sandbox_cashier_pays_and_sends_the_browser_back(web, stack, engine, cut_account):
    reply = post(web, f"/a/{cut_account}/topup", {"amount": "50", "channel": "wechat"})
    cashier_url = reply.headers["location"]
    assert cashier_url.startswith(stack.base_url + "/sandbox/wechat/h5?prepay_id=")
    query = parse_qs(urlsplit(cashier_url).query)
    assert "50.00" in web.get(cashier_url).text

    paid = web.post("/sandbox/wechat/pay", data={"prepay_id": query["prepay_id"][0],
                                                 "redirect_url": query["redirect_url"][0]})

    back = f"{stack.base_url}/a/{cut_account}?order={orders(engine)[0].out_trade_no}"
    assert (paid.status_code, paid.headers["location"]) == (303, back)
    assert "已到账 50.00 元" in web.get(back).text
    assert balance_of(engine, cut_account) == 4500


@pytest.mark.parametrize("redirect_url", ["https://evil.example/a/1", "{base}.evil.example/a/1",
                                          "javascript:alert(1)"])
def test_sandbox_cashier_never_sends_the_browser_elsewhere(web, stack, standin, engine,
                                                           cut_account, redirect_url):
    order = start_wechat_payment(web, standin, cut_account)
    redirect_url = redirect_url.format(base=stack.base_url)
    page = web.get("/sandbox/wechat/h5", params={"prepay_id": order.prepay_id,
                                                 "redirect_url": redirect_url})
    assert f'href="{redirect_url}"' not in page.text  # not even as a link
    reply = web.post("/sandbox/wechat/pay", data={"prepay_id": order.prepay_id,
                                                  "redirect_url": redirect_url})
    assert reply.status_code == 200 and "location" not in reply.headers
    assert "已付款" in reply.text
    assert balance_of(engine, cut_account) == 4500  # paid all the same


def test_account_page_offers_alipay_and_wechat_pay(client, cut_account):
    page = client.get(f"/a/{cut_account}").text
    assert 'value="alipay"' in page and 'value="wechat"' in page
    assert "支付宝支付" in page and "微信支付" in page


def test_inside_wechat_without_an_appsecret_the_page_explains_instead_of_offering_h5(
        settings, engine, tmp_path, cut_account):
    live = settings.model_copy(update=_real_wechat(tmp_path))  # no appsecret: no JSAPI
    with TestClient(create_app(live, engine), follow_redirects=False) as c:
        page = c.get(f"/a/{cut_account}", headers={"user-agent": IN_WECHAT}).text
        assert 'value="wechat"' not in page and "在浏览器打开" in page
        reply = post(c, f"/a/{cut_account}/topup", {"amount": "50", "channel": "wechat"},
                       headers={"user-agent": IN_WECHAT})
    assert reply.status_code == 400 and "在浏览器打开" in reply.text
    assert orders(engine) == []


def test_wechat_unreachable_shows_a_clear_message_and_changes_nothing(client, engine, cut_account):
    # TestClient serves no port: our provider's call to the stand-in at base_url is refused.
    reply = post(client, f"/a/{cut_account}/topup", {"amount": "50", "channel": "wechat"})
    assert reply.status_code == 502
    assert "微信支付暂时无法下单" in reply.text and "-5.00" in reply.text
    assert [(o.channel, o.status) for o in orders(engine)] == [("wechat", PENDING)]
    assert balance_of(engine, cut_account) == -500


# -- no sandbox next to real merchant keys ------------------------------------------------------

def _real_alipay(tmp_path):
    private_pem, public_pem = generate_rsa_keypair()
    (tmp_path / "app.pem").write_text(private_pem)
    (tmp_path / "alipay.pem").write_text(public_pem)
    return {"alipay_app_id": "2021004100000001",
            "alipay_app_private_key_file": tmp_path / "app.pem",
            "alipay_public_key_file": tmp_path / "alipay.pem"}


def _real_wechat(tmp_path):
    keys = ensure_wechat_sandbox_keys(tmp_path / "merchant")  # stand-ins for a merchant's files
    (tmp_path / "apiclient_key.pem").write_text(keys.merchant_private_pem)
    (tmp_path / "apiv3_key").write_text(keys.apiv3_key + "\n")
    (tmp_path / "pub_key.pem").write_text(keys.platform_public_pem)
    return {"wechat_appid": "wx1234567890abcdef", "wechat_mchid": "1900012345",
            "wechat_merchant_private_key_file": tmp_path / "apiclient_key.pem",
            "wechat_merchant_serial_no": keys.merchant_serial_no,
            "wechat_apiv3_key_file": tmp_path / "apiv3_key",
            "wechat_public_key_file": tmp_path / "pub_key.pem",
            "wechat_public_key_id": keys.public_key_id}


@pytest.mark.parametrize("real, channels", [(_real_alipay, ("alipay",)),
                                            (_real_wechat, ("wechat",))])
def test_with_one_providers_keys_no_sandbox_is_served(settings, engine, tmp_path, real, channels):
    live = settings.model_copy(update=real(tmp_path))
    with TestClient(create_app(live, engine), follow_redirects=False) as c:
        providers = c.app.state.providers
        assert providers.channels == channels
        assert (providers.sandbox_alipay, providers.sandbox_wechat) == (None, None)
        assert c.get("/sandbox/wechat/h5?prepay_id=x").status_code == 404
        assert c.get("/sandbox/alipay/gateway.do?app_id=x").status_code == 404
        assert c.get("/sandbox/wechat/api/v3/pay/transactions/out-trade-no/FK1").status_code == 404
        missing = "wechat" if channels == ("alipay",) else "alipay"
        assert c.post(f"/notify/{missing}", content=b"{}").status_code == 404


def test_real_wechat_keys_with_a_setting_missing_fail_at_start(settings, engine, tmp_path):
    real = _real_wechat(tmp_path) | {"wechat_public_key_id": ""}
    live = settings.model_copy(update=real)
    with pytest.raises(ValueError, match="FEIKONG_WECHAT_PUBLIC_KEY_ID"):
        create_app(live, engine)


def test_real_wechat_provider_uses_the_configured_ids(settings, engine, tmp_path):
    live = settings.model_copy(update=_real_wechat(tmp_path))
    wechat = create_app(live, engine).state.providers.wechat
    assert (wechat.appid, wechat.mchid, wechat.gateway_url) == (
        "wx1234567890abcdef", "1900012345", "https://api.mch.weixin.qq.com")
