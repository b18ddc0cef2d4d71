"""The official account's message API played locally (api.weixin.qq.com/cgi-bin/…), for the
demo and the tests: what `messaging/wechat.py` calls through wechatpy.

`make_wechat_messages_app(standin)` serves, in WeChat's JSON (errors too are HTTP 200 with
{"errcode", "errmsg": "… rid: …"}):
- GET `cgi-bin/token?grant_type=client_credential&appid&secret`: {"access_token",
  "expires_in": 7200}; 40013 invalid appid, 40125 invalid appsecret, 40002 invalid grant_type.
- POST `cgi-bin/message/template/send?access_token`: a template message to a follower:
  {"errcode": 0, "errmsg": "ok", "msgid"}; 43004 when the openid does not follow the account.
- POST `cgi-bin/message/subscribe/bizsend?access_token`: a subscription notice, to an openid
  that granted the template (each grant is one notice; 43101 without one).
- GET `cgi-bin/ticket/getticket?access_token&type=jsapi`: the JS-SDK's jsapi_ticket,
  {"errcode": 0, "errmsg": "ok", "ticket", "expires_in": 7200} (40097 for another type);
  `jsapi_tickets(var_dir)` lists those handed out, so a test can check a wx.config signature.
- GET `cgi-bin/user/info?access_token&openid&lang`: {"subscribe": 1, "openid", …} or
  {"subscribe": 0, "openid"}.
Access tokens: 41001 missing, 40001 unknown, 42001 expired (`expire_tokens(var_dir)` expires
them all, as a token replaced elsewhere would be). Sends: 40003 an openid not of this account,
40037 an unknown template, 47003 data missing a key of the template or a value WeChat would
refuse (a thing over 20 characters, an amount that is not one, …).

Followers and grants are rows under var_dir (standins/store.py), so any process can set them:
by default every openid of the account's shape follows and has granted every template (the
demo's residents), and `set_follows(var_dir, openid, False)`,
`set_subscription(var_dir, openid, template_id, n)` (n notices, None: refused),
`set_defaults(var_dir, follows=…, subscribed=…)` change that. `fail_next(var_dir, n)` makes the
next n sends fail (-1 "system error", or 40003 when permanent, or any errcode given).
Each message sent is in the outbox with the text WeChat shows. Nothing here touches our database.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from standins import store

TEMPLATE = "wechat_template"
SUBSCRIBE = "wechat_subscribe"
FAULT_CHANNEL = "wechat"
TOKEN_LIFETIME_S = 7200
OPENID = re.compile(r"^o[A-Za-z0-9_-]{27}$")  # the shape of the OAuth stand-in's openids
# The sandbox account's templates: id → (title, content). Template messages and subscription
# notices alike take the keys in the content, each value checked by its type's rule.
SANDBOX_TEMPLATES: dict[str, tuple[str, str]] = {
    "sandbox-tpl-low-balance": ("电费余额不足提醒",
                                "户号：{{character_string1.DATA}}\n当前余额：{{amount2.DATA}}\n"
                                "温馨提示：{{thing3.DATA}}"),
    "sandbox-tpl-exhausted": ("电费余额用尽提醒",
                              "户号：{{character_string1.DATA}}\n当前余额：{{amount2.DATA}}\n"
                              "预计停电时间：{{time3.DATA}}"),
    "sandbox-tpl-cut": ("停电通知",
                        "户号：{{character_string1.DATA}}\n停电时间：{{time2.DATA}}\n"
                        "恢复供电需充值：{{amount3.DATA}}\n停电原因：{{thing4.DATA}}"),
    "sandbox-tpl-restored": ("恢复供电通知",
                             "户号：{{character_string1.DATA}}\n恢复时间：{{time2.DATA}}\n"
                             "当前余额：{{amount3.DATA}}"),
    "sandbox-tpl-payment": ("充值成功通知",
                            "户号：{{character_string1.DATA}}\n充值金额：{{amount2.DATA}}\n"
                            "当前余额：{{amount3.DATA}}\n到账时间：{{time4.DATA}}"),
    "sandbox-tpl-emergency": ("应急用电通知",
                              "户号：{{character_string1.DATA}}\n应急用电金额：{{amount2.DATA}}\n"
                              "温馨提示：{{thing3.DATA}}"),
}
SANDBOX_TEMPLATES |= {key.replace("-tpl-", "-sub-"): value
                      for key, value in list(SANDBOX_TEMPLATES.items())}
_KEY = re.compile(r"\{\{([a-z_]+[0-9]*)\.DATA\}\}")
_RULES: dict[str, Callable[[str], bool]] = {  # WeChat's rules per kind of key
    "thing": lambda v: 0 < len(v) <= 20,
    "character_string": lambda v: re.fullmatch(r"[A-Za-z0-9_\-.:/#]{1,32}", v) is not None,
    "amount": lambda v: re.fullmatch(r"[¥￥]?-?[0-9]{1,10}(\.[0-9]{1,2})?元?", v) is not None,
    "time": lambda v: re.fullmatch(r"[0-9年月日:\- ]{4,20}", v) is not None
    and re.search(r"[0-9]", v) is not None,
    "phrase": lambda v: 0 < len(v) <= 5 and re.fullmatch(r"[\u4e00-\u9fff]+", v) is not None,
    "number": lambda v: re.fullmatch(r"[0-9.]{1,32}", v) is not None,
    "phone_number": lambda v: re.fullmatch(r"[0-9+\-]{1,17}", v) is not None,
}
ERRMSG = {
    -1: "system error", 40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type", 40003: "invalid openid", 40013: "invalid appid",
    40037: "invalid template_id", 40125: "invalid appsecret", 41001: "access_token missing",
    42001: "access_token expired", 43004: "require subscribe",
    43101: "user refuse to accept the msg", 44002: "empty post data", 40097: "invalid args",
    47001: "data format error", 47003: "argument invalid!",
}


class WechatRefusal(Exception):
    def __init__(self, errcode: int, detail: str = "") -> None:
        super().__init__(errcode)
        self.errcode, self.detail = errcode, detail


def _error(errcode: int, detail: str = "") -> dict:
    rid = "-".join(secrets.token_hex(4) for _ in range(3))
    text = ERRMSG.get(errcode, "error") + (f" {detail}" if detail else "")
    return {"errcode": errcode, "errmsg": f"{text} rid: {rid}"}


@dataclass
class WechatMessagesStandin:
    """WeChat's message API for the official account `appid` with appsecret `secret`."""

    var_dir: Path
    appid: str
    secret: str
    templates: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(SANDBOX_TEMPLATES))
    clock: Callable[[], float] = time.time

    def token(self, query: dict[str, str]) -> dict:
        if query.get("grant_type") != "client_credential":
            return _error(40002)
        if query.get("appid") != self.appid:
            return _error(40013)
        if not secrets.compare_digest(query.get("secret", "").encode(), self.secret.encode()):
            return _error(40125)
        token = secrets.token_urlsafe(96)
        with store.connect(self.var_dir, write=True) as conn:
            conn.execute("DELETE FROM wechat_token WHERE expires_at < ?", (self.clock() - 86400,))
            conn.execute("INSERT INTO wechat_token (token, appid, expires_at) VALUES (?, ?, ?)",
                         (token, self.appid, self.clock() + TOKEN_LIFETIME_S))
        return {"access_token": token, "expires_in": TOKEN_LIFETIME_S}

    def ticket(self, query: dict[str, str]) -> dict:
        """getticket: a new jsapi_ticket each time (WeChat hands out the same one until it
        expires; a client keeps it, so the difference does not show)."""
        try:
            self._authorize(query)
        except WechatRefusal as refusal:
            return _error(refusal.errcode, refusal.detail)
        if query.get("type") != "jsapi":
            return _error(40097, "type")
        ticket = secrets.token_urlsafe(64)
        with store.connect(self.var_dir, write=True) as conn:
            conn.execute("DELETE FROM wechat_ticket WHERE expires_at < ?",
                         (self.clock() - 86400,))
            conn.execute("INSERT INTO wechat_ticket (ticket, appid, expires_at) VALUES (?, ?, ?)",
                         (ticket, self.appid, self.clock() + TOKEN_LIFETIME_S))
        return {"errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": TOKEN_LIFETIME_S}

    def user_info(self, query: dict[str, str]) -> dict:
        try:
            self._authorize(query)
            openid = self._openid(query.get("openid", ""))
        except WechatRefusal as refusal:
            return _error(refusal.errcode, refusal.detail)
        if not self._follows(openid):
            return {"subscribe": 0, "openid": openid}
        return {"subscribe": 1, "openid": openid, "language": "zh_CN",
                "subscribe_time": int(self.clock()), "remark": "", "groupid": 0,
                "tagid_list": [], "subscribe_scene": "ADD_SCENE_QR_CODE", "qr_scene": 0,
                "qr_scene_str": ""}

    def send(self, channel: str, query: dict[str, str], body: bytes) -> dict:
        """template/send (`channel` TEMPLATE) or subscribe/bizsend (SUBSCRIBE)."""
        try:
            self._authorize(query)
            if not body.strip():
                raise WechatRefusal(44002)
            try:
                message = json.loads(body)
            except ValueError:
                raise WechatRefusal(47001) from None
            if not isinstance(message, dict):
                raise WechatRefusal(47001)
            openid = self._openid(message.get("touser", ""))
            template_id = message.get("template_id")
            if template_id not in self.templates:
                raise WechatRefusal(40037)
            title, content = self.templates[template_id]
            values = self._values(content, message.get("data"))
            link = message.get("url" if channel == TEMPLATE else "page") or ""
            if not isinstance(link, str):
                raise WechatRefusal(47003, "url invalid")
            fault = store.take_fault(self.var_dir, FAULT_CHANNEL)
            if fault is not None:
                permanent, code = fault
                raise WechatRefusal(int(code) if code else 40003 if permanent else -1)
            if channel == TEMPLATE and not self._follows(openid):
                raise WechatRefusal(43004, "hint: [sandbox]")
            if channel == SUBSCRIBE and not self._take_grant(openid, template_id):
                raise WechatRefusal(43101)
        except WechatRefusal as refusal:
            return _error(refusal.errcode, refusal.detail)
        msgid = secrets.randbelow(2**62)
        text = title + "\n" + _KEY.sub(lambda m: values[m.group(1)], content)
        store.record(self.var_dir, channel=channel, recipient=openid, template_id=template_id,
                     params=values, text=text, ref=str(msgid), link=link)
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def _authorize(self, query: dict[str, str]) -> None:
        token = query.get("access_token", "")
        if not token:
            raise WechatRefusal(41001)
        with store.connect(self.var_dir) as conn:
            row = conn.execute("SELECT appid, expires_at FROM wechat_token WHERE token = ?",
                               (token,)).fetchone()
        if row is None or row["appid"] != self.appid:
            raise WechatRefusal(40001)
        if row["expires_at"] <= self.clock():
            raise WechatRefusal(42001)

    def _openid(self, openid) -> str:
        if not isinstance(openid, str) or not OPENID.match(openid):
            raise WechatRefusal(40003)
        return openid

    def _values(self, content: str, data) -> dict[str, str]:
        if not isinstance(data, dict):
            raise WechatRefusal(47003, "data invalid")
        values = {}
        for key in _KEY.findall(content):
            item = data.get(key)
            value = item.get("value") if isinstance(item, dict) else None
            rule = _RULES.get(re.sub(r"[0-9]+$", "", key), lambda v: len(v) <= 20)
            if not isinstance(value, str) or not rule(value):
                raise WechatRefusal(47003, f"data.{key}.value invalid")
            values[key] = value
        return values

    def _follows(self, openid: str) -> bool:
        with store.connect(self.var_dir) as conn:
            row = conn.execute("SELECT follows FROM wechat_follower WHERE openid = ?",
                               (openid,)).fetchone()
            if row is not None:
                return bool(row["follows"])
            return _default(conn, "follows")

    def _take_grant(self, openid: str, template_id: str) -> bool:
        with store.connect(self.var_dir, write=True) as conn:
            row = conn.execute("SELECT remaining FROM wechat_grant WHERE openid = ? AND "
                               "template_id = ?", (openid, template_id)).fetchone()
            if row is None:
                return _default(conn, "subscribed")
            if row["remaining"] is None or row["remaining"] <= 0:
                return False
            conn.execute("UPDATE wechat_grant SET remaining = remaining - 1 WHERE openid = ? "
                         "AND template_id = ?", (openid, template_id))
            return True


def _default(conn, name: str) -> bool:
    row = conn.execute("SELECT value FROM setting WHERE name = ?", (f"wechat_{name}",)).fetchone()
    return True if row is None else row["value"] == "1"


def make_wechat_messages_app(standin: WechatMessagesStandin) -> Starlette:
    """The stand-in's endpoints, to mount at any path (WeChat's API base then is that path)."""

    async def token(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(standin.token, dict(request.query_params)))

    async def ticket(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(standin.ticket, dict(request.query_params)))

    async def user_info(request: Request) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(standin.user_info,
                                                    dict(request.query_params)))

    def sender(channel: str):
        async def send(request: Request) -> JSONResponse:
            body = await request.body()
            return JSONResponse(await run_in_threadpool(
                standin.send, channel, dict(request.query_params), body))
        return send

    return Starlette(routes=[
        Route("/cgi-bin/token", token),
        Route("/cgi-bin/ticket/getticket", ticket),
        Route("/cgi-bin/user/info", user_info),
        Route("/cgi-bin/message/template/send", sender(TEMPLATE), methods=["POST"]),
        Route("/cgi-bin/message/subscribe/bizsend", sender(SUBSCRIBE), methods=["POST"]),
    ])


# -- for tests and the outbox page: any process, through the files under var_dir

def outbox(var_dir: Path) -> list[dict]:
    """Every message the stand-in accepted, oldest first: dicts of kind ("template" or
    "subscribe"), openid, template_id, data ({key: value}), url (or page), text (as WeChat
    shows it), at (aware datetime, UTC), msgid."""
    return [{"kind": m["channel"].removeprefix("wechat_"), "openid": m["recipient"],
             "template_id": m["template_id"], "data": m["params"], "url": m["link"],
             "text": m["text"], "at": m["at"], "msgid": m["ref"]}
            for m in store.messages(var_dir, (TEMPLATE, SUBSCRIBE))]


def fail_next(var_dir: Path, n: int, permanent: bool = False, errcode: int | None = None) -> None:
    """The next `n` sends that would succeed fail: with -1 "system error" (the client tries
    again later), or, if `permanent`, with 40003; or with the `errcode` given. 0 cancels."""
    store.set_fault(var_dir, FAULT_CHANNEL, n, permanent=permanent,
                    code=None if errcode is None else str(errcode))


def clear_outbox(var_dir: Path) -> None:
    store.clear_messages(var_dir, (TEMPLATE, SUBSCRIBE))


def set_follows(var_dir: Path, openid: str, follows: bool) -> None:
    with store.connect(var_dir, write=True) as conn:
        conn.execute("INSERT INTO wechat_follower (openid, follows) VALUES (?, ?) ON CONFLICT "
                     "(openid) DO UPDATE SET follows = excluded.follows", (openid, int(follows)))


def set_subscription(var_dir: Path, openid: str, template_id: str, notices: int | None) -> None:
    """`openid` granted `template_id` for `notices` more notices (None: refused / turned off)."""
    with store.connect(var_dir, write=True) as conn:
        conn.execute("INSERT INTO wechat_grant (openid, template_id, remaining) VALUES (?, ?, ?)"
                     " ON CONFLICT (openid, template_id) DO UPDATE SET remaining ="
                     " excluded.remaining", (openid, template_id, notices))


def grant_subscription(var_dir: Path, openid: str, template_id: str) -> None:
    """`openid` tapped "allow" for `template_id` once more: one more notice (a refusal before is
    undone), as a one-time subscription (一次性订阅) accumulates in WeChat."""
    with store.connect(var_dir, write=True) as conn:
        conn.execute("INSERT INTO wechat_grant (openid, template_id, remaining) VALUES (?, ?, 1)"
                     " ON CONFLICT (openid, template_id) DO UPDATE SET remaining ="
                     " COALESCE(wechat_grant.remaining, 0) + 1", (openid, template_id))


def jsapi_tickets(var_dir: Path) -> list[str]:
    """The jsapi_tickets handed out, oldest first."""
    with store.connect(var_dir) as conn:
        return [row["ticket"] for row in
                conn.execute("SELECT ticket FROM wechat_ticket ORDER BY rowid")]


def set_defaults(var_dir: Path, *, follows: bool | None = None,
                 subscribed: bool | None = None) -> None:
    """What an openid without a row of its own does: follow the account, have granted every
    template (both True until changed)."""
    with store.connect(var_dir, write=True) as conn:
        for name, value in (("follows", follows), ("subscribed", subscribed)):
            if value is not None:
                conn.execute("INSERT INTO setting (name, value) VALUES (?, ?) ON CONFLICT (name)"
                             " DO UPDATE SET value = excluded.value",
                             (f"wechat_{name}", "1" if value else "0"))


def expire_tokens(var_dir: Path) -> None:
    """Every access token handed out so far expires now (the next call gets 42001)."""
    with store.connect(var_dir, write=True) as conn:
        conn.execute("UPDATE wechat_token SET expires_at = MIN(expires_at, ?)", (time.time(),))
