"""WeChat messages from the official account (服务号) to a resident's openid, through wechatpy.

Two kinds, chosen per estate by the caller:
- template messages (模板消息, `cgi-bin/message/template/send`): to followers of the account;
- subscription notices (订阅通知, `cgi-bin/message/subscribe/bizsend`): to a resident who granted
  that template on our page (the JS-SDK `wx-open-subscribe` button), follower or not.
and `follows(openid)` (`cgi-bin/user/info`'s `subscribe`), and `jsapi_config(url)`: what the
JS-SDK's `wx.config` needs on our page (the `wx-open-subscribe` button), signed with the
jsapi_ticket (`cgi-bin/ticket/getticket?type=jsapi`, kept by wechatpy until it expires, 2 h).

The only module that imports `wechatpy.WeChatClient`. wechatpy 1.8.18 facts this module works
around:
- `fetch_access_token` asks the fixed https://api.weixin.qq.com/cgi-bin/token, and the API calls
  use the class attribute `API_BASE_URL`: both follow `api_base_url` here, so the sandbox
  stand-in or a test server can play WeChat;
- the token request has no timeout (a hung WeChat would hold a thread for ever): every request
  of the client's `requests` session gets one here;
- with `auto_retry` it refetches the token and retries on 40001/40014/42001 without limit (a
  WeChat that keeps refusing tokens would recurse until the stack breaks): off here, and this
  module refetches once and retries once;
- a reply that is not JSON comes back as the `requests.Response` itself, not an exception;
  connection errors and timeouts come as `requests` exceptions; an errcode as
  `WeChatClientException` (`errcode` None for an HTTP error status).
The access token is kept in the client's memory until 60 s before it expires (one token per
process: WeChat keeps a replaced token valid for 5 more minutes, and a process whose token was
replaced gets 40001 and fetches again). Nothing here touches our database; no token, secret or
full openid is logged or put in an error.
"""

from __future__ import annotations

import re
import threading
import time

import requests
from requests.adapters import HTTPAdapter
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException
from wechatpy.utils import random_string

from messaging.base import DeliveryError

API_BASE_URL = "https://api.weixin.qq.com/"
OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATA_KEY = re.compile(r"^[a-z_]+[0-9]*$")
TOKEN_CODES = frozenset({40001, 40014, 42001})  # invalid, invalid, expired access token
# Worth another try later: WeChat's "system busy" and its rate limits. Every other errcode
# (43004 not following, 43101 refused the subscription, 40003 invalid openid, 40037 invalid
# template, 47003 bad data, our credentials refused, …) refuses this message for good.
TRANSIENT_CODES = frozenset({-1, 45009, 45011, 45047})


class _TimeoutAdapter(HTTPAdapter):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def send(self, request, timeout=None, **kwargs):
        return super().send(request, timeout=timeout or self.timeout, **kwargs)


class _Client(WeChatClient):
    """wechatpy's client on `api_base_url` + "cgi-bin/", with a timeout on every request."""

    def __init__(self, appid: str, secret: str, api_base_url: str, timeout_s: float) -> None:
        super().__init__(appid, secret, timeout=timeout_s, auto_retry=False)
        self.API_BASE_URL = api_base_url.rstrip("/") + "/cgi-bin/"
        adapter = _TimeoutAdapter(timeout_s)
        self._http.mount("http://", adapter)
        self._http.mount("https://", adapter)

    def fetch_access_token(self):
        return self._fetch_access_token(url=self.API_BASE_URL + "token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})


class WechatMessenger:
    """Messages from the official account `appid` (its appsecret `secret`).

    Blocking (one or a few HTTPS requests of at most `timeout_s` each): call it from a thread,
    not the event loop. Thread-safe (one call at a time per messenger)."""

    def __init__(self, appid: str, secret: str, *, api_base_url: str = API_BASE_URL,
                 timeout_s: float = 10.0) -> None:
        if not (appid and secret):
            raise ValueError("WeChat messages need the official account's appid and appsecret")
        self.appid = appid
        self._client = _Client(appid, secret, api_base_url, timeout_s)
        self._lock = threading.Lock()

    def send_template(self, openid: str, template_id: str, data: dict, url: str) -> str:
        """A template message to the follower `openid`; `data` maps the template's keys
        ("character_string1", "amount2", …) to their text (or to WeChat's {"value": …});
        tapping it opens `url` ("" for none). Returns WeChat's msgid. Raises DeliveryError
        (permanent: 43004 not following, 40003 invalid openid, 40037 invalid template, 47003
        bad data; not permanent: -1 system busy, rate limits, network)."""
        self._check(openid, template_id)
        body = {"touser": openid, "template_id": template_id, "data": _wire_data(data)}
        if url:
            body["url"] = url
        result = self._call("post", "message/template/send", data=body)
        return str(result.get("msgid", ""))

    def send_subscribe(self, openid: str, template_id: str, data: dict, page_url: str) -> str:
        """A subscription notice (订阅通知) to `openid`, who granted `template_id` on our page;
        `data` as for send_template; tapping it opens `page_url` ("" for none). Returns WeChat's
        msgid ("" if WeChat gives none). Raises DeliveryError (permanent: 43101 the resident
        did not grant it or turned it off, 40003, 40037, 47003; not permanent as above)."""
        self._check(openid, template_id)
        body = {"touser": openid, "template_id": template_id, "data": _wire_data(data)}
        if page_url:
            body["page"] = page_url
        result = self._call("post", "message/subscribe/bizsend", data=body)
        return str(result.get("msgid", ""))

    def follows(self, openid: str) -> bool:
        """Whether `openid` follows the official account now (user/info's `subscribe`).
        Raises DeliveryError as the sends do (40003 for an openid not of this account)."""
        if not isinstance(openid, str) or not OPENID.match(openid):
            raise DeliveryError("BAD_OPENID", "not an openid", permanent=True)
        result = self._call("get", "user/info", params={"openid": openid, "lang": "zh_CN"})
        return result.get("subscribe") == 1

    def _check(self, openid: str, template_id: str) -> None:
        if not isinstance(openid, str) or not OPENID.match(openid):
            raise DeliveryError("BAD_OPENID", "not an openid", permanent=True)
        if not isinstance(template_id, str) or not TEMPLATE_ID.match(template_id):
            raise DeliveryError("BAD_TEMPLATE", "not a WeChat template id", permanent=True)

    def jsapi_config(self, url: str) -> dict:
        """`wx.config`'s appId, timestamp, nonceStr and signature for the page at `url` (its
        address without the "#…" part, as the browser shows it): sha1 over
        "jsapi_ticket=…&noncestr=…&timestamp=…&url=…" (wechatpy's `get_jsapi_signature`), the
        ticket fetched with the access token and kept until it expires. Raises DeliveryError
        as the sends do (a network failure, WeChat refusing the token or the ticket)."""
        if not isinstance(url, str) or not url.startswith(("https://", "http://")) \
                or "#" in url:
            raise ValueError("a page's address, without its #fragment")
        jsapi = self._client.jsapi
        ticket = self._retrying(jsapi.get_jsapi_ticket)
        if not isinstance(ticket, str) or not ticket:
            raise DeliveryError("MALFORMED_REPLY", "no jsapi_ticket in WeChat's reply",
                                permanent=False)
        nonce, timestamp = random_string(16), int(time.time())
        return {"appId": self.appid, "timestamp": timestamp, "nonceStr": nonce,
                "signature": jsapi.get_jsapi_signature(nonce, ticket, timestamp, url)}

    def _call(self, method: str, endpoint: str, **kwargs) -> dict:
        """One API call, its access token fetched once more and the call retried once if WeChat
        says the token is invalid or expired. Returns the reply (errcode 0)."""
        def call():
            params = dict(kwargs.get("params") or {})
            return getattr(self._client, method)(endpoint, **{**kwargs, "params": params})

        result = self._retrying(call)
        if not isinstance(result, dict):
            raise DeliveryError("MALFORMED_REPLY", "WeChat's reply is not JSON", permanent=False)
        return result

    def _retrying(self, call):
        """`call()` under the lock, retried once with a new access token if WeChat says the
        token is invalid or expired; WeChat's and the network's errors as DeliveryError."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return call()
                except WeChatClientException as exc:
                    if exc.errcode in TOKEN_CODES and attempt == 1:
                        self._refetch_token()
                        continue
                    raise _delivery_error(exc) from None
                except requests.RequestException as exc:
                    raise DeliveryError("NETWORK", type(exc).__name__, permanent=False) from None
                except (KeyError, TypeError, ValueError) as exc:
                    # a reply without the fields expected (wechatpy reads them unchecked)
                    raise DeliveryError("MALFORMED_REPLY", type(exc).__name__,
                                        permanent=False) from None
        raise AssertionError("unreachable")

    def _refetch_token(self) -> None:
        try:
            self._client.fetch_access_token()
        except WeChatClientException as exc:
            raise _delivery_error(exc) from None
        except (requests.RequestException, ValueError) as exc:
            raise DeliveryError("NETWORK", type(exc).__name__, permanent=False) from None


def _wire_data(data: dict) -> dict:
    """{"amount2": "3.50元"} → {"amount2": {"value": "3.50元"}}; WeChat's form passes as is."""
    if not isinstance(data, dict):
        raise DeliveryError("BAD_DATA", "the template data must be a dict", permanent=True)
    wire = {}
    for key, value in data.items():
        if not isinstance(key, str) or not DATA_KEY.match(key):
            raise DeliveryError("BAD_DATA", f"not a template key: {key!r}", permanent=True)
        if isinstance(value, dict) and isinstance(value.get("value"), str):
            wire[key] = value
        elif isinstance(value, str):
            wire[key] = {"value": value}
        else:
            raise DeliveryError("BAD_DATA", f"{key}: the value must be text", permanent=True)
    return wire


def _delivery_error(exc: WeChatClientException) -> DeliveryError:
    if exc.errcode is None:  # an HTTP error status
        status = getattr(exc.response, "status_code", None)
        return DeliveryError("NETWORK", f"HTTP {status}", permanent=False)
    try:
        code = int(exc.errcode)
    except (TypeError, ValueError):
        return DeliveryError("MALFORMED_REPLY", "errcode is not a number", permanent=False)
    message = str(exc.errmsg or "")[:200]
    return DeliveryError(str(code), message, permanent=code not in TRANSIENT_CODES)
