"""The official account's web OAuth through wechatpy (`WechatOAuthClient`) against the stand-in of
WeChat's authorize page and sns/oauth2/access_token, served alone over HTTP."""

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from payments.serving import serve_in_thread
from payments.wechat_oauth import WechatOAuthClient, WechatOAuthError, mask_openid
from standins.wechat_oauth import OAuthStandin, make_oauth_app
from tests.conftest import free_port

APPID, SECRET = "wxsandbox000000001", "0123456789abcdef0123456789abcdef"
CALLBACK = "https://pay.example.com/wechat/oauth"


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def standin(clock):
    return OAuthStandin(APPID, SECRET, "pay.example.com", clock=clock)


@pytest.fixture
def base_url(standin):
    with serve_in_thread(make_oauth_app(standin)) as url:
        yield url


def client(base_url: str, secret: str = SECRET) -> WechatOAuthClient:
    return WechatOAuthClient(APPID, secret, authorize_base_url=base_url + "/connect/",
                             api_base_url=base_url + "/")


def code_for(base_url: str, state: str = "s1") -> str:
    """What WeChat does for snsapi_base: straight back to the callback with a code."""
    reply = httpx.get(client(base_url).authorize_url(CALLBACK, state))
    assert reply.status_code == 302
    location = urlsplit(reply.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == CALLBACK
    query = parse_qs(location.query)
    assert query["state"] == [state]
    return query["code"][0]


def test_a_fresh_code_gives_the_openid(base_url):
    openid = client(base_url).fetch_openid(code_for(base_url))
    assert openid.startswith("o") and len(openid) == 28


def test_the_token_endpoint_answers_wechats_json(base_url):
    reply = httpx.get(base_url + "/sns/oauth2/access_token", params={
        "appid": APPID, "secret": SECRET, "code": code_for(base_url),
        "grant_type": "authorization_code"}).json()
    assert set(reply) == {"access_token", "expires_in", "refresh_token", "openid", "scope"}
    assert reply["expires_in"] == 7200 and reply["scope"] == "snsapi_base"


def test_a_code_works_once(base_url):
    code = code_for(base_url)
    client(base_url).fetch_openid(code)
    with pytest.raises(WechatOAuthError) as refused:
        client(base_url).fetch_openid(code)
    assert refused.value.code == "40029"


def test_a_code_expires_after_five_minutes(base_url, clock):
    code = code_for(base_url)
    clock.now += 301
    with pytest.raises(WechatOAuthError) as refused:
        client(base_url).fetch_openid(code)
    assert refused.value.code == "40029"


def test_a_wrong_appsecret_is_refused(base_url):
    with pytest.raises(WechatOAuthError) as refused:
        client(base_url, secret="f" * 32).fetch_openid(code_for(base_url))
    assert refused.value.code == "40125"


def test_an_unreachable_wechat_is_a_network_error():
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WechatOAuthError) as refused:
        client(dead).fetch_openid("0a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P")
    assert refused.value.code == "NETWORK"


def test_a_malformed_code_is_refused_without_asking_wechat(base_url, standin):
    with pytest.raises(WechatOAuthError) as refused:
        client(base_url).fetch_openid("a b&secret=x")
    assert refused.value.code == "BAD_CODE" and standin.exchanges == 0


def test_the_authorize_page_refuses_a_redirect_outside_the_registered_domain(base_url):
    url = client(base_url).authorize_url("https://evil.example.net/wechat/oauth", "s1")
    reply = httpx.get(url)
    assert reply.status_code == 400 and "10003" in reply.text


def test_the_same_browser_is_the_same_wechat_user(base_url):
    with httpx.Client() as browser:
        codes = [parse_qs(urlsplit(browser.get(client(base_url).authorize_url(CALLBACK, "s"))
                                   .headers["location"]).query)["code"][0] for _ in range(2)]
    openids = {client(base_url).fetch_openid(code) for code in codes}
    assert len(openids) == 1


@pytest.mark.parametrize("state", ["a.b", "x" * 129, "状态"])
def test_a_state_wechat_would_not_carry_back_is_refused(state):
    with pytest.raises(ValueError):
        client("http://127.0.0.1:1").authorize_url(CALLBACK, state)


def test_openids_are_masked_for_logs():
    assert mask_openid("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o") == "oUpF…S6o"
