"""WeChat messages through wechatpy (`WechatMessenger`) against the stand-in of the official
account's API (cgi-bin/token, message/template/send, message/subscribe/bizsend, user/info),
served by uvicorn on loopback under a path, as in the sandbox."""

import json
import socket
import subprocess
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route

from app.messaging_setup import build_messengers
from standins.mounts import messaging_mounts
from standins.paths import WECHAT_MESSAGES_STANDIN_PATH
from app.settings import Settings
from messaging import DeliveryError, WechatMessenger
from payments.serving import serve_in_thread
from standins.wechat_oauth import new_openid
from standins.wechat_messages import (
    WechatMessagesStandin,
    clear_outbox,
    expire_tokens,
    fail_next,
    make_wechat_messages_app,
    outbox,
    set_defaults,
    set_follows,
    set_subscription,
)

APPID, SECRET = "wxsandbox000000001", "0123456789abcdef0123456789abcdef"
CUT_TPL, CUT_SUB = "sandbox-tpl-cut", "sandbox-sub-cut"
CUT_DATA = {"character_string1": "101020", "time2": "2025-11-03 08:00",
            "amount3": "15.00元", "thing4": "余额不足"}
CUT_TEXT = ("停电通知\n户号：101020\n停电时间：2025-11-03 08:00\n恢复供电需充值：15.00元\n"
            "停电原因：余额不足")
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


class Counting(WechatMessagesStandin):
    """The stand-in, counting the tokens it hands out (for the tests of token caching)."""

    tokens_issued = 0

    def token(self, query):
        reply = super().token(query)
        if "access_token" in reply:
            self.tokens_issued += 1
        return reply


@pytest.fixture
def var_dir(tmp_path):
    return tmp_path / "var"


@pytest.fixture
def standin(var_dir):
    return Counting(var_dir, APPID, SECRET)


@pytest.fixture
def base(standin):
    app = Starlette(routes=[Mount(WECHAT_MESSAGES_STANDIN_PATH,
                                  app=make_wechat_messages_app(standin))])
    with serve_in_thread(app) as url:
        yield url + WECHAT_MESSAGES_STANDIN_PATH


@pytest.fixture
def wechat(base):
    return WechatMessenger(APPID, SECRET, api_base_url=base)


@pytest.fixture
def openid():
    return new_openid()


def refused(send) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        send()
    return caught.value


def test_a_template_message_reaches_a_follower(wechat, var_dir, openid):
    msgid = wechat.send_template(openid, CUT_TPL, CUT_DATA, "https://pay.example.com/a/101020")
    [message] = outbox(var_dir)
    assert message["kind"] == "template" and message["openid"] == openid
    assert message["template_id"] == CUT_TPL and message["data"] == CUT_DATA
    assert message["url"] == "https://pay.example.com/a/101020"
    assert message["text"] == CUT_TEXT and message["msgid"] == msgid and msgid.isdigit()


def test_wechats_own_data_form_passes_as_is(wechat, var_dir, openid):
    wechat.send_template(openid, CUT_TPL, {k: {"value": v, "color": "#173177"}
                                           for k, v in CUT_DATA.items()}, "")
    assert [(m["text"], m["url"]) for m in outbox(var_dir)] == [(CUT_TEXT, "")]


def test_a_subscription_notice_needs_a_grant_and_uses_it(wechat, var_dir, openid):
    set_subscription(var_dir, openid, CUT_SUB, 1)
    wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, "https://pay.example.com/a/101020")
    error = refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("43101", True)
    assert error.message.startswith("user refuse to accept the msg rid: ")
    assert [(m["kind"], m["url"]) for m in outbox(var_dir)] == [
        ("subscribe", "https://pay.example.com/a/101020")]


def test_a_refused_subscription_is_permanent(wechat, var_dir, openid):
    set_subscription(var_dir, openid, CUT_SUB, None)
    assert refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, "")).code == "43101"
    set_defaults(var_dir, subscribed=False)
    other = new_openid()
    assert refused(lambda: wechat.send_subscribe(other, CUT_SUB, CUT_DATA, "")).permanent
    assert outbox(var_dir) == []


def test_follows_reads_user_info(wechat, var_dir, openid):
    assert wechat.follows(openid) is True  # the sandbox's residents follow by default
    set_follows(var_dir, openid, False)
    assert wechat.follows(openid) is False
    set_defaults(var_dir, follows=False)
    assert wechat.follows(new_openid()) is False


def test_a_template_message_to_someone_not_following_is_refused_for_good(wechat, var_dir,
                                                                          openid):
    set_follows(var_dir, openid, False)
    error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("43004", True)
    assert outbox(var_dir) == []


@pytest.mark.parametrize("template, data, code", [
    ("no-such-template", CUT_DATA, "40037"),
    (CUT_TPL, {**CUT_DATA, "thing4": "余" * 21}, "47003"),
    (CUT_TPL, {**CUT_DATA, "amount3": "十五元"}, "47003"),
    (CUT_TPL, {k: v for k, v in CUT_DATA.items() if k != "time2"}, "47003"),
])
def test_a_template_or_data_wechat_refuses(wechat, var_dir, openid, template, data, code):
    error = refused(lambda: wechat.send_template(openid, template, data, ""))
    assert (error.code, error.permanent) == (code, True)
    assert outbox(var_dir) == []


def test_an_openid_not_of_the_account_is_refused(wechat, var_dir):
    error = refused(lambda: wechat.send_template("oNotOneOfOurs", CUT_TPL, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("40003", True)
    assert refused(lambda: wechat.follows("oNotOneOfOurs")).code == "40003"


@pytest.mark.parametrize("openid", ["", "o" * 65, "o penid", None])
def test_what_is_not_an_openid_is_not_sent(wechat, var_dir, openid):
    error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("BAD_OPENID", True)


def test_data_that_is_not_text_is_not_sent(wechat, var_dir, openid):
    error = refused(lambda: wechat.send_template(openid, CUT_TPL, {**CUT_DATA, "amount3": 15}, ""))
    assert (error.code, error.permanent) == ("BAD_DATA", True)
    assert outbox(var_dir) == []


def test_the_token_is_fetched_once_and_kept(wechat, standin, openid):
    for _ in range(3):
        wechat.send_template(openid, CUT_TPL, CUT_DATA, "")
    wechat.follows(openid)
    assert standin.tokens_issued == 1


@pytest.mark.parametrize("how", ["expired", "replaced"])
def test_an_expired_or_replaced_token_is_fetched_again_and_the_send_retried(
        wechat, standin, var_dir, openid, how):
    wechat.send_template(openid, CUT_TPL, CUT_DATA, "")
    if how == "expired":
        expire_tokens(var_dir)  # the next call gets 42001
    else:
        wechat._client.session.set(wechat._client.access_token_key, "stale")  # 40001
    wechat.send_template(openid, CUT_TPL, CUT_DATA, "")
    assert standin.tokens_issued == 2
    assert len(outbox(var_dir)) == 2


def test_a_wrong_appsecret_is_refused_and_nothing_sent(base, var_dir, openid):
    wechat = WechatMessenger(APPID, "f" * 32, api_base_url=base)
    error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("40125", True)
    assert outbox(var_dir) == []


def test_fail_next_is_system_busy_then_the_send_goes(wechat, var_dir, openid):
    fail_next(var_dir, 2)
    for _ in range(2):
        error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
        assert (error.code, error.permanent) == ("-1", False)
        assert error.message.startswith("system error rid: ")
    wechat.send_template(openid, CUT_TPL, CUT_DATA, "")
    assert len(outbox(var_dir)) == 1


def test_fail_next_permanently_and_with_a_rate_limit(wechat, var_dir, openid):
    fail_next(var_dir, 1, permanent=True)
    assert refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, "")).permanent
    fail_next(var_dir, 1, errcode=45009)
    error = refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("45009", False)
    assert outbox(var_dir) == []


def test_the_standin_answers_wechats_json(base, standin):
    token = httpx.get(base + "/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": APPID, "secret": SECRET}).json()
    assert set(token) == {"access_token", "expires_in"} and token["expires_in"] == 7200
    wrong = httpx.get(base + "/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": "wx0000", "secret": SECRET})
    assert wrong.status_code == 200 and wrong.json()["errcode"] == 40013
    missing = httpx.post(base + "/cgi-bin/message/template/send", content=b"{}").json()
    assert missing["errcode"] == 41001
    unknown = httpx.post(base + "/cgi-bin/message/template/send",
                         params={"access_token": "nope"}, content=b"{}").json()
    assert unknown["errcode"] == 40001


def test_no_server_is_a_transient_network_error(openid):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        wechat = WechatMessenger(APPID, SECRET,
                                 api_base_url=f"http://127.0.0.1:{s.getsockname()[1]}/")
        error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
    assert (error.code, error.permanent) == ("NETWORK", False)


def test_a_server_error_or_a_reply_that_is_not_json_is_transient(openid):
    async def token(request: Request) -> JSONResponse:
        return JSONResponse({"access_token": "t", "expires_in": 7200})

    async def down(request: Request) -> PlainTextResponse:
        return PlainTextResponse("bad gateway", status_code=502)

    async def html(request: Request) -> PlainTextResponse:
        return PlainTextResponse("<html>maintenance</html>")

    app = Starlette(routes=[Route("/cgi-bin/token", token),
                            Route("/cgi-bin/message/template/send", down, methods=["POST"]),
                            Route("/cgi-bin/message/subscribe/bizsend", html, methods=["POST"])])
    with serve_in_thread(app) as url:
        wechat = WechatMessenger(APPID, SECRET, api_base_url=url)
        error = refused(lambda: wechat.send_template(openid, CUT_TPL, CUT_DATA, ""))
        assert (error.code, error.message, error.permanent) == ("NETWORK", "HTTP 502", False)
        error = refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, ""))
        assert (error.code, error.permanent) == ("MALFORMED_REPLY", False)


def test_followers_grants_and_failures_are_set_from_another_process(wechat, var_dir, openid):
    def python(code: str) -> str:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    python("from standins.wechat_messages import set_follows, fail_next; "
           f"set_follows({str(var_dir)!r}, {openid!r}, False); fail_next({str(var_dir)!r}, 1)")
    assert wechat.follows(openid) is False
    assert refused(lambda: wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, "")).code == "-1"
    wechat.send_subscribe(openid, CUT_SUB, CUT_DATA, "")
    seen = json.loads(python("import json; from standins.wechat_messages import outbox; "
                             f"print(json.dumps(outbox({str(var_dir)!r}), default=str))"))
    assert [(m["kind"], m["openid"]) for m in seen] == [("subscribe", openid)]
    clear_outbox(var_dir)
    assert outbox(var_dir) == []


def test_the_sandbox_wiring_is_the_oauth_standins_official_account(var_dir, openid):
    settings = Settings(var_dir=var_dir, database_url="sqlite://")
    with serve_in_thread(Starlette(routes=messaging_mounts(settings))) as url:
        live = settings.model_copy(update={"public_url": url})
        wechat = build_messengers(live).wechat
        assert wechat is not None and wechat.appid == APPID
        wechat.send_template(openid, live.wechat_template_payment, {
            "character_string1": "101020", "amount2": "50.00元", "amount3": "45.00元",
            "time4": "2025-11-03 08:00"}, url + "/a/101020")
    assert [m["text"] for m in outbox(var_dir)] == [
        "充值成功通知\n户号：101020\n充值金额：50.00元\n当前余额：45.00元\n到账时间：2025-11-03 08:00"]


def test_a_real_official_account_is_used_as_set(var_dir):
    settings = Settings(var_dir=var_dir, database_url="sqlite://", wechat_mchid="1900000109",
                        wechat_appid="wx1234567890abcdef", wechat_appsecret="s" * 32)
    wechat = build_messengers(settings).wechat
    assert wechat.appid == "wx1234567890abcdef"
    assert wechat._client.API_BASE_URL == "https://api.weixin.qq.com/cgi-bin/"
    assert build_messengers(settings.model_copy(update={"wechat_appsecret": ""})).wechat is None


def test_every_sandbox_template_takes_its_typed_keys(wechat, var_dir, openid):
    """The sandbox's templates, each with values of its keys' types: all accepted, both kinds."""
    values = {"character_string1": "101020", "amount2": "3.50元", "amount3": "45.00元",
              "thing3": "余额不足，请及时充值", "thing4": "余额不足", "time2": "2025-11-03 08:00",
              "time3": "2025年11月3日 08:00", "time4": "08:00"}
    from standins.wechat_messages import SANDBOX_TEMPLATES
    for template_id in SANDBOX_TEMPLATES:
        send = wechat.send_subscribe if "-sub-" in template_id else wechat.send_template
        send(openid, template_id, values, "")
    assert len(outbox(var_dir)) == len(SANDBOX_TEMPLATES) == 12
