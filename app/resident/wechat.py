"""Inside WeChat's browser: the signed cookies of the official account's web OAuth.

Two cookies, both signed with FEIKONG_SECRET_KEY (itsdangerous, HMAC-SHA1 with a salt per cookie,
timestamped), HttpOnly, SameSite=Lax (WeChat's redirect back to us is a top-level GET: Lax
cookies go with it), Secure when the public URL is HTTPS:
- `wx_openid`: the resident's openid for our appid, for 30 days. A cookie that does not verify,
  is too old, or was made for another appid counts as absent: OAuth runs again.
- `wx_oauth`: the pending top-up (户号, amount in fen), or the pending sign-in (where to go
  after it), and the `state` sent to WeChat, for 10 minutes, on the callback's path only. WeChat carries `state` back unchanged but accepts only
  128 letters and digits: a random nonce, bound to this browser by the cookie. A callback whose
  state is not this cookie's (forged, replayed, from another browser) is refused before the code
  is exchanged.
Nothing here touches the database or logs an openid.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.orders.providers import WECHAT_OAUTH_CALLBACK_PATH
from payments.wechat_oauth import OPENID

OPENID_COOKIE = "wx_openid"
PENDING_COOKIE = "wx_oauth"
OPENID_MAX_AGE_S = 30 * 86400
PENDING_MAX_AGE_S = 600
STATE_CHARS = string.ascii_letters + string.digits
STATE_LENGTH = 32


@dataclass(frozen=True)
class PendingTopup:
    """What the resident asked for before WeChat's OAuth sent them away and back: a top-up of
    `amount_fen` for `number`, or (amount 0, no number) a sign-in, then `next`."""

    state: str
    number: str
    amount_fen: int
    next: str = ""

    @property
    def sign_in(self) -> bool:
        return self.amount_fen == 0 and not self.number


class WechatCookies:
    """Reads and writes the two cookies for the official account `appid`."""

    def __init__(self, secret_key: str, appid: str, *, secure: bool) -> None:
        self.appid = appid
        self.secure = secure
        self._openid = URLSafeTimedSerializer(secret_key, salt="feikong.wechat.openid")
        self._pending = URLSafeTimedSerializer(secret_key, salt="feikong.wechat.oauth-pending")

    @classmethod
    def for_request(cls, request: Request) -> WechatCookies:
        settings = request.app.state.settings
        return cls(settings.secret_key, request.app.state.providers.wechat_oauth.appid,
                   secure=settings.base_url.startswith("https://"))

    # -- the openid

    def openid(self, request: Request) -> str | None:
        """This browser's openid for our appid, or None (no cookie, or one that does not verify,
        is older than 30 days, or belongs to another appid)."""
        raw = request.cookies.get(OPENID_COOKIE)
        if not raw:
            return None
        try:
            value = self._openid.loads(raw, max_age=OPENID_MAX_AGE_S)
        except BadSignature:  # SignatureExpired too
            return None
        if not isinstance(value, dict) or value.get("a") != self.appid:
            return None
        openid = value.get("o")
        return openid if isinstance(openid, str) and OPENID.match(openid) else None

    def set_openid(self, response: Response, openid: str) -> None:
        response.set_cookie(OPENID_COOKIE, self._openid.dumps({"a": self.appid, "o": openid}),
                            max_age=OPENID_MAX_AGE_S, httponly=True, samesite="lax",
                            secure=self.secure)

    # -- the pending top-up

    def new_pending(self, number: str, amount_fen: int, next_: str = "") -> PendingTopup:
        state = "".join(secrets.choice(STATE_CHARS) for _ in range(STATE_LENGTH))
        return PendingTopup(state, number, amount_fen, next_)

    def set_pending(self, response: Response, pending: PendingTopup) -> None:
        value = self._pending.dumps({"s": pending.state, "n": pending.number,
                                     "f": pending.amount_fen, "x": pending.next})
        response.set_cookie(PENDING_COOKIE, value, max_age=PENDING_MAX_AGE_S, httponly=True,
                            samesite="lax", secure=self.secure, path=WECHAT_OAUTH_CALLBACK_PATH)

    def pending(self, request: Request, state: str) -> PendingTopup | None:
        """The pending top-up whose state is `state`, or None (no cookie, a cookie that does not
        verify or is older than 10 minutes, or another state)."""
        raw = request.cookies.get(PENDING_COOKIE)
        if not raw or not state:
            return None
        try:
            value = self._pending.loads(raw, max_age=PENDING_MAX_AGE_S)
        except BadSignature:
            return None
        if not isinstance(value, dict):
            return None
        kept, number, amount_fen = value.get("s"), value.get("n"), value.get("f")
        next_ = value.get("x", "")
        if not (isinstance(kept, str) and isinstance(number, str) and type(amount_fen) is int
                and isinstance(next_, str)):
            return None
        if not secrets.compare_digest(kept.encode(), state.encode()):
            return None
        return PendingTopup(kept, number, amount_fen, next_)

    def clear_pending(self, response: Response) -> None:
        response.delete_cookie(PENDING_COOKIE, path=WECHAT_OAUTH_CALLBACK_PATH, httponly=True,
                               samesite="lax", secure=self.secure)
