"""WeChat's web OAuth (网页授权) played for the sandbox: the authorize page and
`sns/oauth2/access_token`, in memory, over HTTP.

`OAuthStandin` keeps what WeChat keeps: the official account (appid, appsecret, its 网页授权域名)
and the codes it hands out (single use, 5 minutes). `make_oauth_app(standin)` serves
- GET `connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`: as WeChat does
  for snsapi_base, a 302 at once to `redirect_uri?code=CODE&state=STATE`. The "WeChat user" is
  this browser: an openid kept in a cookie of the stand-in's own path, made on the first visit.
  A wrong appid, scope or state, or a redirect_uri outside the registered domain, gets WeChat's
  kind of error page and no redirect.
- GET `sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`: the real JSON
  (access_token, expires_in, refresh_token, openid, scope); HTTP 200 with errcode 40029
  "invalid code" for a bad, expired or reused code, 40125 for a wrong secret, 40013 for a wrong
  appid.
Point wechatpy at it with `OAUTH_BASE_URL = base + "/connect/"` and `API_BASE_URL = base + "/"`.
Nothing here touches our database.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from standins.alipay_sandbox import _create_if_absent

CODE_LIFETIME_S = 300  # WeChat: "5分钟未被使用自动过期"
STATE = re.compile(r"^[A-Za-z0-9]{0,128}$")
USER_COOKIE = "sandbox_wx_openid"
_ALNUM = string.ascii_letters + string.digits


def ensure_sandbox_appsecret(directory: Path) -> str:
    """The sandbox official account's appsecret (32 hex digits, like WeChat's), created 0600 the
    first time in `directory` (the sandbox keys' directory)."""
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "wechat_appsecret"
    if not path.exists():
        _create_if_absent(path, secrets.token_hex(16), mode=0o600)
    secret = path.read_text(encoding="ascii").strip()
    if not re.fullmatch(r"[0-9a-f]{32}", secret):
        raise ValueError(f"{path}: the sandbox appsecret must be 32 hex digits")
    return secret


def new_openid() -> str:
    """WeChat-shaped: 28 characters starting with "o"."""
    return "o" + "".join(secrets.choice(_ALNUM + "-_") for _ in range(27))


@dataclass
class _Code:
    openid: str
    scope: str
    issued_at: float
    used: bool = False


class OAuthStandin:
    """The official account's web OAuth as WeChat runs it, in memory. Thread-safe.

    `domain` is the registered 网页授权域名 (host[:port]): a redirect_uri elsewhere is refused.
    `exchanges` counts successful code exchanges (tests read it)."""

    def __init__(self, appid: str, secret: str, domain: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.appid, self.secret, self.domain = appid, secret, domain
        self.clock = clock
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self.exchanges = 0

    def authorize(self, *, appid: str, redirect_uri: str, response_type: str, scope: str,
                  state: str, openid: str) -> str:
        """The URL WeChat sends the browser to for the user `openid`; ValueError (with WeChat's
        wording) if the request is one WeChat would refuse."""
        if appid != self.appid:
            raise ValueError("appid参数错误")
        if response_type != "code" or scope not in ("snsapi_base", "snsapi_userinfo"):
            raise ValueError("scope参数错误或没有scope权限")
        if not STATE.match(state):
            raise ValueError("state参数错误：只能是a-zA-Z0-9，最多128字节")
        target = urlsplit(redirect_uri)
        if target.scheme not in ("http", "https") or target.netloc != self.domain:
            raise ValueError("redirect_uri域名与后台配置不一致，错误码：10003")
        code = "".join(secrets.choice(_ALNUM) for _ in range(32))
        with self._lock:
            self._expire()
            self._codes[code] = _Code(openid=openid, scope=scope, issued_at=self.clock())
        query = urlencode({"code": code, "state": state})
        return f"{redirect_uri}{'&' if target.query else '?'}{query}"

    def exchange(self, *, appid: str, secret: str, code: str, grant_type: str) -> dict:
        """The body of sns/oauth2/access_token: the token and openid, or {errcode, errmsg}."""
        if appid != self.appid:
            return _error(40013, "invalid appid")
        if not secrets.compare_digest(secret.encode(), self.secret.encode()):
            return _error(40125, "invalid appsecret")
        if grant_type != "authorization_code":
            return _error(40002, "invalid grant_type")
        with self._lock:
            self._expire()
            issued = self._codes.get(code)
            if issued is None or issued.used:
                return _error(40029, "invalid code")
            issued.used = True
            self.exchanges += 1
        return {
            "access_token": secrets.token_urlsafe(60),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(60),
            "openid": issued.openid,
            "scope": issued.scope,
        }

    def _expire(self) -> None:
        oldest = self.clock() - CODE_LIFETIME_S
        for code in [c for c, v in self._codes.items() if v.issued_at < oldest]:
            del self._codes[code]


def _error(errcode: int, errmsg: str) -> dict:
    return {"errcode": errcode, "errmsg": f"{errmsg}, rid: sandbox-{secrets.token_hex(6)}"}


def make_oauth_app(standin: OAuthStandin) -> Starlette:
    """The stand-in's two endpoints, to mount at any path (the cookie follows the mount)."""

    async def authorize(request: Request) -> Response:
        q = request.query_params
        openid = request.cookies.get(USER_COOKIE, "")
        fresh = not re.fullmatch(r"o[A-Za-z0-9_-]{27}", openid)
        if fresh:
            openid = new_openid()
        try:
            url = standin.authorize(appid=q.get("appid", ""), redirect_uri=q.get("redirect_uri", ""),
                                    response_type=q.get("response_type", ""),
                                    scope=q.get("scope", ""), state=q.get("state", ""),
                                    openid=openid)
        except ValueError as exc:
            return PlainTextResponse(f"{exc}\n（沙箱：本地模拟的微信网页授权）", status_code=400)
        reply = RedirectResponse(url, status_code=302)
        if fresh:
            reply.set_cookie(USER_COOKIE, openid, max_age=365 * 86400, httponly=True,
                             samesite="lax", path=request.scope.get("root_path") or "/")
        return reply

    async def access_token(request: Request) -> Response:
        q = request.query_params
        body = standin.exchange(appid=q.get("appid", ""), secret=q.get("secret", ""),
                                code=q.get("code", ""), grant_type=q.get("grant_type", ""))
        return JSONResponse(body)  # errors too are HTTP 200, as WeChat sends them

    return Starlette(routes=[
        Route("/connect/oauth2/authorize", authorize),
        Route("/sns/oauth2/access_token", access_token),
    ])
