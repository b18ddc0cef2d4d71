"""WeChat web OAuth (网页授权) for the official account, through wechatpy: the payer's openid for
JSAPI pay inside WeChat's browser.

The only module that imports `wechatpy.oauth`. Scope `snsapi_base`: WeChat redirects at once, with
no consent screen, to `redirect_uri?code=CODE&state=STATE`; the code (single use, 5 minutes) is
exchanged server-side at `sns/oauth2/access_token` with the appsecret for the openid. The web
access token that comes with it is not kept: snsapi_base gives nothing else to read.

wechatpy 1.8.18 facts this module works around:
- `WeChatOAuth.authorize_url` and `fetch_access_token` build their URLs on the class attributes
  `OAUTH_BASE_URL` and `API_BASE_URL` (trailing slash included): set on the instance here, so the
  sandbox stand-in or a test server can play WeChat;
- its requests have no timeout (a hung WeChat would hold a worker thread forever): given one here;
- it raises `WeChatOAuthException` for an `errcode` reply (40029 invalid code, 40163 code been
  used, 40125 invalid appsecret, …) and for a non-2xx HTTP status, `KeyError` for a reply
  without `openid`, `ValueError` for one that is not JSON: all become `WechatOAuthError`;
- WeChat accepts only `[A-Za-z0-9]{0,128}` as `state`: checked here before a URL is built.
Nothing here touches our database, and no openid, code or token is logged.
"""

from __future__ import annotations

import re

import requests
from wechatpy.exceptions import WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from payments.base import ProviderError

AUTHORIZE_BASE_URL = "https://open.weixin.qq.com/connect/"
SNS_API_BASE_URL = "https://api.weixin.qq.com/"
SCOPE = "snsapi_base"
STATE = re.compile(r"^[A-Za-z0-9]{0,128}$")  # what WeChat carries back unchanged
CODE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")


class WechatOAuthError(ProviderError):
    """The code could not be exchanged for an openid: WeChat's `errcode` as `code` ("40029"
    invalid code, "40163" code already used, …), or ours ("BAD_CODE", "NETWORK",
    "MALFORMED_REPLY"). Nothing was changed on our side."""

    provider = "WeChat OAuth"


class _WeChatOAuth(WeChatOAuth):
    """wechatpy's client with a timeout on every request."""

    timeout: tuple[float, float] = (5.0, 10.0)

    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


class WechatOAuthClient:
    """Web OAuth of the official account `appid` (the appid bound to our merchant id).

    `authorize_base_url` and `api_base_url` are WeChat's by default; the sandbox passes its
    stand-in's (each with a trailing slash, as wechatpy joins them)."""

    def __init__(self, appid: str, secret: str, *, authorize_base_url: str = AUTHORIZE_BASE_URL,
                 api_base_url: str = SNS_API_BASE_URL,
                 timeout: tuple[float, float] = (5.0, 10.0)) -> None:
        if not appid or not secret:
            raise ValueError("WeChat OAuth needs the official account's appid and appsecret")
        self.appid = str(appid)
        self._secret = str(secret)
        self.authorize_base_url = authorize_base_url.rstrip("/") + "/"
        self.api_base_url = api_base_url.rstrip("/") + "/"
        self.timeout = timeout

    def __repr__(self) -> str:  # never the secret
        return f"WechatOAuthClient(appid={self.appid!r}, api={self.api_base_url!r})"

    def _client(self, redirect_uri: str = "", state: str = "") -> _WeChatOAuth:
        client = _WeChatOAuth(self.appid, self._secret, redirect_uri, scope=SCOPE, state=state)
        client.OAUTH_BASE_URL = self.authorize_base_url
        client.API_BASE_URL = self.api_base_url
        client.timeout = self.timeout
        return client

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where to send the browser: WeChat's authorize page (snsapi_base), which comes back at
        once to `redirect_uri?code=…&state=…`. `state` must be 0–128 letters and digits."""
        if not STATE.match(state):
            raise ValueError("WeChat carries back only a state of 0-128 letters and digits")
        return self._client(redirect_uri, state).authorize_url

    def fetch_openid(self, code: str) -> str:
        """Exchange an authorize `code` for the resident's openid (a blocking HTTP call: run it
        in a thread). Raises WechatOAuthError for a bad, expired or reused code, an unreachable
        WeChat, or a reply without a usable openid."""
        if not CODE.match(code or ""):
            raise WechatOAuthError(0, "BAD_CODE", "the code is missing or malformed")
        client = self._client()
        try:
            reply = client.fetch_access_token(code)
        except WeChatOAuthException as exc:
            status = exc.response.status_code if exc.response is not None else 0
            code_ = str(exc.errcode) if exc.errcode is not None else "HTTP"
            raise WechatOAuthError(status, code_, str(exc.errmsg or "")) from None
        except requests.RequestException as exc:
            raise WechatOAuthError(0, "NETWORK", type(exc).__name__) from None
        except (KeyError, ValueError, TypeError) as exc:
            raise WechatOAuthError(200, "MALFORMED_REPLY", type(exc).__name__) from None
        openid = reply.get("openid") if isinstance(reply, dict) else None
        if not isinstance(openid, str) or not OPENID.match(openid):
            raise WechatOAuthError(200, "MALFORMED_REPLY", "no usable openid in the reply")
        return openid


def mask_openid(openid: str) -> str:
    """For logs: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" → "oUpF…S6o"; never the whole openid."""
    return f"{openid[:4]}…{openid[-3:]}" if len(openid) > 10 else "…"
