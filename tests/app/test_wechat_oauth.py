"""Paying inside WeChat's browser, over HTTP against the live app: the official account's web
OAuth (wechatpy against the OAuth stand-in mounted in the app) for the openid, kept in a signed
cookie, then a JSAPI order whose paySign the stand-in checks with the merchant public key."""

import base64
import json
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from itsdangerous import URLSafeTimedSerializer
from sqlmodel import select

from app.db import transaction
from app.orders.models import Order
from app.orders.providers import build_wechat_oauth
from app.settings import Settings
from tests.factories import balance_of, entries_of
from tests.identity.support import post

WECHAT_UA = ("Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
             "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 "
             "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.47.2560(0x28002F35) WeChat/arm64 "
             "Weixin NetType/WIFI Language/zh_CN ABI/arm64")
PAY_PARAMS = re.compile(r'<script type="application/json" id="pay-params">(.*?)</script>', re.S)


@pytest.fixture
def live(stack):
    stack.start_web()
    return stack


def browser(stack, *, user_agent: str = WECHAT_UA) -> httpx.Client:
    return httpx.Client(base_url=stack.base_url, follow_redirects=False, timeout=15,
                        headers={"user-agent": user_agent})


@pytest.fixture
def wx(live):
    """A phone inside WeChat: its own cookies (ours, and the OAuth stand-in's WeChat user)."""
    with browser(live) as c:
        yield c


def orders(engine) -> list[Order]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(Order).order_by(Order.id)))


def start_oauth(wx, number: str, yuan: str = "50") -> str:
    """Top up with WeChat Pay inside WeChat with no openid yet: our redirect to WeChat's OAuth."""
    reply = post(wx, f"/a/{number}/topup", {"amount": yuan, "channel": "wechat"})
    assert reply.status_code == 303, reply.text
    return reply.headers["location"]


def authorize(wx, authorize_url: str) -> tuple[str, str, str]:
    """WeChat's authorize page (the stand-in): (callback URL, code, state)."""
    reply = wx.get(authorize_url)
    assert reply.status_code == 302, reply.text
    location = reply.headers["location"]
    query = parse_qs(urlsplit(location).query)
    return location, query["code"][0], query["state"][0]


def callback(wx, code: str, state: str) -> httpx.Response:
    return wx.get("/wechat/oauth?" + urlencode({"code": code, "state": state}))


def pay_page(wx, reply: httpx.Response) -> httpx.Response:
    """The JSAPI pay page a top-up or the OAuth callback sends the browser to (303)."""
    assert reply.status_code == 303, reply.text
    assert re.fullmatch(r"/wechat/pay/\w+", urlsplit(reply.headers["location"]).path)
    return wx.get(reply.headers["location"])


def pay_params(page: httpx.Response) -> dict:
    assert page.status_code == 200, page.text
    return json.loads(PAY_PARAMS.search(page.text).group(1))


def paid_through_oauth(wx, number: str) -> dict:
    location, _, _ = authorize(wx, start_oauth(wx, number))
    return pay_params(pay_page(wx, wx.get(location)))


def sets_openid(reply: httpx.Response) -> bool:
    return any(h.startswith("wx_openid=") and "Max-Age=0" not in h
               for h in reply.headers.get_list("set-cookie"))


def test_inside_wechat_the_account_page_offers_wechat_pay(wx, cut_account):
    page = wx.get(f"/a/{cut_account}").text
    assert 'value="wechat"' in page and "微信支付" in page
    assert "在微信里暂时不能用微信支付" not in page


def test_topup_without_openid_goes_to_wechat_oauth_and_creates_no_order(live, wx, engine,
                                                                        cut_account):
    url = urlsplit(start_oauth(wx, cut_account))
    query = parse_qs(url.query)
    assert url.path == "/sandbox/wechat/oauth/connect/oauth2/authorize"
    assert url.fragment == "wechat_redirect"
    assert query["scope"] == ["snsapi_base"] and query["response_type"] == ["code"]
    assert query["appid"] == [live.app.state.providers.wechat_oauth.appid]
    assert query["redirect_uri"] == [f"{live.base_url}/wechat/oauth"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", query["state"][0])  # what WeChat carries back
    assert orders(engine) == []


def test_oauth_callback_keeps_the_openid_and_renders_the_jsapi_page(live, wx, engine,
                                                                    cut_account):
    location, _, _ = authorize(wx, start_oauth(wx, cut_account))
    came_back = wx.get(location)
    assert sets_openid(came_back)
    page = pay_page(wx, came_back)
    params = pay_params(page)
    [order] = orders(engine)
    assert (order.amount_fen, order.channel, order.status) == (5000, "wechat", "pending")
    standin = live.app.state.providers.wechat_standin
    prepay = standin.order_by_prepay_id(params["package"].removeprefix("prepay_id="))
    assert prepay.out_trade_no == order.out_trade_no and prepay.trade_type == "JSAPI"
    assert prepay.openid == wx.cookies["sandbox_wx_openid"]  # the WeChat user who came back
    assert f"/a/{cut_account}?order={order.out_trade_no}" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_jsapi_pay_sign_verifies_with_the_merchant_public_key(live, wx, cut_account):
    params = paid_through_oauth(wx, cut_account)
    keys = live.app.state.providers.wechat_standin.sandbox.keys
    public_key = serialization.load_pem_public_key(keys.merchant_public_pem.encode())
    message = "".join(params[k] + "\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
    assert params["signType"] == "RSA"
    public_key.verify(base64.b64decode(params["paySign"]), message.encode(),
                      padding.PKCS1v15(), hashes.SHA256())  # raises if it does not verify


def test_with_the_openid_cookie_the_next_topup_skips_oauth(live, wx, engine, cut_account):
    paid_through_oauth(wx, cut_account)
    reply = post(wx, f"/a/{cut_account}/topup", {"amount": "20", "channel": "wechat"})
    assert pay_params(pay_page(wx, reply))["appId"] == live.app.state.providers.wechat_oauth.appid
    assert [o.amount_fen for o in orders(engine)] == [5000, 2000]
    assert live.app.state.providers.wechat_oauth_standin.exchanges == 1


@pytest.mark.parametrize("code", ["0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P", "", "bad code/../x"])
def test_a_forged_or_missing_code_gets_a_clear_page_no_order_no_cookie(wx, engine, cut_account,
                                                                       code):
    _, _, state = authorize(wx, start_oauth(wx, cut_account))
    reply = callback(wx, code, state)
    assert reply.status_code == 400
    assert "微信授权已失效" in reply.text and "您的余额没有变化" in reply.text
    assert not sets_openid(reply)
    assert orders(engine) == []


def test_a_reused_code_gets_a_clear_page_no_order_no_cookie(live, wx, engine, cut_account):
    _, code, _ = authorize(wx, start_oauth(wx, cut_account))
    _, _, state = authorize(wx, start_oauth(wx, cut_account))
    assert pay_params(pay_page(wx, callback(wx, code, state)))  # the first use: fine
    wx.cookies.delete("wx_openid")
    _, _, state = authorize(wx, start_oauth(wx, cut_account))
    reply = callback(wx, code, state)  # the same code again
    assert reply.status_code == 400 and "微信授权已失效" in reply.text
    assert not sets_openid(reply)
    assert len(orders(engine)) == 1


def test_a_forged_state_is_refused_before_the_code_is_spent(live, wx, engine, cut_account):
    _, code, state = authorize(wx, start_oauth(wx, cut_account))
    forged = ("A" if state[0] != "A" else "B") + state[1:]
    reply = callback(wx, code, forged)
    assert reply.status_code == 400 and "这个支付链接已失效" in reply.text
    assert not sets_openid(reply) and orders(engine) == []
    assert live.app.state.providers.wechat_oauth_standin.exchanges == 0
    assert pay_params(pay_page(wx, callback(wx, code, state)))  # the code was not spent on it


def test_a_callback_from_another_browser_is_refused(live, wx, engine, cut_account):
    location, _, _ = authorize(wx, start_oauth(wx, cut_account))
    with browser(live) as other:  # no pending top-up of its own
        reply = other.get(location)
    assert reply.status_code == 400 and "这个支付链接已失效" in reply.text
    assert not sets_openid(reply) and orders(engine) == []


@pytest.mark.parametrize("tamper", ["signature", "payload"])
def test_a_tampered_openid_cookie_is_ignored_and_oauth_runs_again(live, wx, engine, cut_account,
                                                                  tamper):
    paid_through_oauth(wx, cut_account)
    value = wx.cookies["wx_openid"]
    payload, _, signature = value.rpartition(".")
    if tamper == "signature":
        value = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    else:
        value = ("A" if value[0] != "A" else "B") + value[1:]
    wx.cookies.set("wx_openid", value, domain="127.0.0.1")
    reply = post(wx, f"/a/{cut_account}/topup", {"amount": "20", "channel": "wechat"})
    assert reply.status_code == 303
    assert urlsplit(reply.headers["location"]).path.endswith("/connect/oauth2/authorize")
    assert len(orders(engine)) == 1  # only the first top-up's


def test_an_openid_cookie_of_another_appid_is_ignored(live, wx, engine, cut_account):
    signer = URLSafeTimedSerializer(live.settings.secret_key, salt="feikong.wechat.openid")
    wx.cookies.set("wx_openid", signer.dumps({"a": "wxsomebodyelse00001", "o": "o" + "x" * 27}),
                   domain="127.0.0.1")
    reply = post(wx, f"/a/{cut_account}/topup", {"amount": "20", "channel": "wechat"})
    assert reply.status_code == 303 and "/connect/oauth2/authorize" in reply.headers["location"]
    assert orders(engine) == []


def test_outside_wechat_wechat_pay_is_still_h5(live, engine, cut_account):
    with browser(live, user_agent="Mozilla/5.0 (Linux; Android 13) Mobile Safari/537.36") as c:
        reply = post(c, f"/a/{cut_account}/topup", {"amount": "50", "channel": "wechat"})
    assert reply.status_code == 303 and "/sandbox/wechat/h5?prepay_id=" in reply.headers["location"]
    assert live.app.state.providers.wechat_oauth_standin.exchanges == 0


def test_the_sandbox_pay_sheet_refuses_a_bad_pay_sign_and_credits_nothing(live, wx, engine,
                                                                          cut_account):
    params = paid_through_oauth(wx, cut_account)
    bad = params | {"paySign": base64.b64encode(b"\x00" * 256).decode()}
    sheet = wx.get("/sandbox/wechat/jsapi", params=bad)
    assert sheet.status_code == 400 and "SIGN_ERROR" in sheet.text
    paid = wx.post("/sandbox/wechat/jsapi/pay", data=bad)
    assert paid.status_code == 400 and "SIGN_ERROR" in paid.text
    assert wx.get("/sandbox/wechat/jsapi", params=params).status_code == 200  # the real one
    [order] = orders(engine)
    assert live.app.state.providers.wechat_standin.orders[order.out_trade_no].trade_state == "NOTPAY"
    assert entries_of(engine, cut_account, "topup") == [] and balance_of(engine, cut_account) == -500


def test_the_sandbox_pay_sheet_pays_and_notifies_once(live, wx, engine, cut_account):
    params = paid_through_oauth(wx, cut_account)
    paid = wx.post("/sandbox/wechat/jsapi/pay", data=params)
    assert paid.status_code == 200 and "已付款" in paid.text
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert [o.status for o in orders(engine)] == ["paid"]


# -- settings -----------------------------------------------------------------------------------

def test_without_an_appsecret_jsapi_is_not_offered(tmp_path):
    assert build_wechat_oauth(Settings(var_dir=tmp_path, wechat_appid="wx1")) is None


def test_an_appsecret_with_the_default_secret_key_stops_the_app(tmp_path):
    with pytest.raises(ValueError, match="FEIKONG_SECRET_KEY"):
        build_wechat_oauth(Settings(var_dir=tmp_path, wechat_appid="wx1", wechat_appsecret="s"))


def test_the_appsecret_may_come_from_a_file_and_wechat_is_the_default(tmp_path):
    secret_file = tmp_path / "appsecret"
    secret_file.write_text("0123456789abcdef0123456789abcdef\n")
    oauth = build_wechat_oauth(Settings(var_dir=tmp_path, wechat_appid="wx1",
                                        wechat_appsecret_file=secret_file, secret_key="k" * 40))
    assert oauth.authorize_url("https://pay.example.com/wechat/oauth", "s1").startswith(
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx1&redirect_uri=https%3A")
    assert oauth.api_base_url == "https://api.weixin.qq.com/"
    assert "0123456789abcdef" not in repr(oauth)


def test_appsecret_and_its_file_together_are_refused(tmp_path):
    secret_file = tmp_path / "appsecret"
    secret_file.write_text("x")
    with pytest.raises(ValueError, match="not both"):
        Settings(var_dir=tmp_path, wechat_appsecret="y",
                 wechat_appsecret_file=secret_file).wechat_appsecret_value()


def test_the_refusal_page_speaks_english_too(wx, engine, cut_account):
    wx.get("/?lang=en")  # the language cookie
    _, _, state = authorize(wx, start_oauth(wx, cut_account))
    reply = callback(wx, "0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P", state)
    assert reply.status_code == 400 and "The WeChat sign-in has expired" in reply.text
    assert orders(engine) == []


def test_the_pay_page_of_a_paid_order_goes_back_to_the_account(live, wx, engine, cut_account):
    params = paid_through_oauth(wx, cut_account)
    assert wx.post("/sandbox/wechat/jsapi/pay", data=params).status_code == 200
    [order] = orders(engine)
    reply = wx.get(f"/wechat/pay/{order.out_trade_no}")
    assert reply.status_code == 303
    assert reply.headers["location"] == f"/a/{cut_account}?order={order.out_trade_no}"


def test_the_pay_page_without_the_openid_cookie_is_a_clear_refusal(live, wx, engine, cut_account):
    paid_through_oauth(wx, cut_account)
    [order] = orders(engine)
    with browser(live) as other:
        reply = other.get(f"/wechat/pay/{order.out_trade_no}")
    assert reply.status_code == 400 and "微信授权已失效" in reply.text
    assert "pay-params" not in reply.text


def test_the_pay_page_of_an_unknown_order_is_a_404(wx):
    reply = wx.get("/wechat/pay/FK20990101000000000000DEADBEEF")
    assert reply.status_code == 404 and "没有这笔充值订单" in reply.text


def test_with_real_keys_and_an_appsecret_no_oauth_stand_in_is_served(settings, engine, tmp_path,
                                                                      cut_account):
    from starlette.testclient import TestClient

    from app.main import create_app
    from tests.app.test_wechat_notify import _real_wechat

    live = settings.model_copy(update=_real_wechat(tmp_path) | {
        "wechat_appsecret": "0123456789abcdef0123456789abcdef", "secret_key": "k" * 40})
    with TestClient(create_app(live, engine), follow_redirects=False,
                    headers={"user-agent": WECHAT_UA}) as c:
        providers = c.app.state.providers
        assert providers.wechat_oauth.api_base_url == "https://api.weixin.qq.com/"
        assert providers.wechat_oauth_standin is None
        assert c.get("/sandbox/wechat/oauth/connect/oauth2/authorize").status_code == 404
        assert c.get("/sandbox/wechat/jsapi").status_code == 404
        reply = post(c, f"/a/{cut_account}/topup", {"amount": "50", "channel": "wechat"})
    assert reply.status_code == 303
    assert reply.headers["location"].startswith(
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx1234567890abcdef&")
    assert orders(engine) == []
