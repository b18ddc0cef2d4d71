"""What WeChat's client does for the JS-SDK on our page, played for the sandbox (the other half of
static/sandbox-wx-jssdk.js, which plays `wx` and the `wx-open-subscribe` open tag in a test or
desktop browser). Mounted by `standins.mounts` only when the sandbox plays WeChat's messages.

- POST /sandbox/wechat/jssdk/config {config: {appId, timestamp, nonceStr, signature}, url}:
  checks the signature as WeChat does, sha1("jsapi_ticket=…&noncestr=…&timestamp=…&url=…")
  with a jsapi_ticket the WeChat stand-in handed out to that appId and not expired;
  {"errMsg": "config:ok"}, or 403 {"errMsg": "config:fail,invalid signature"} (or
  "…invalid url domain" for a page not of this site).
- POST /sandbox/wechat/jssdk/subscribe {config, url, templates: [id, …]}: the "WeChat user" taps
  allow for every template: the config is checked again, the user is the signed-in resident's
  openid (WeChat's client knows who its user is; in the sandbox that is our session), each
  template must be one of the stand-in's; each grant is one more notice at the stand-in
  (`grant_subscription`). Replies WeChat's success detail: {"errMsg": "subscribe:ok",
  "subscribeDetails": "{\"<id>\": \"{\\\"status\\\":\\\"accept\\\"}\", …}"}; a resident not
  signed in or without an openid gets 403 {"errMsg": "subscribe:fail …"}.
Not under CSRF (a stand-in, /sandbox/): these change only the stand-in's grants, never our data.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from app.db import transaction
from app.resident.identity import get_resident, resident_id
from standins import store
from standins.wechat_messages import SANDBOX_TEMPLATES, grant_subscription

JSSDK_PATH = "/sandbox/wechat/jssdk"
MAX_BODY = 8192
MAX_TEMPLATES = 20


def signature_of(ticket: str, nonce: str, timestamp, url: str) -> str:
    text = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(text.encode()).hexdigest()


def check_config(var_dir, appid: str, base_url: str, config, url) -> str | None:
    """None when `config` is a valid wx.config for the page `url`, else WeChat's errMsg."""
    if not isinstance(config, dict) or not isinstance(url, str):
        return "config:fail,invalid arguments"
    if not url.startswith(base_url.rstrip("/") + "/") or "#" in url:
        return "config:fail,invalid url domain"
    if config.get("appId") != appid:
        return "config:fail,invalid appid"
    signature, nonce = config.get("signature"), config.get("nonceStr")
    timestamp = config.get("timestamp")
    if not (isinstance(signature, str) and isinstance(nonce, str)
            and isinstance(timestamp, (int, str)) and not isinstance(timestamp, bool)):
        return "config:fail,invalid signature"
    with store.connect(var_dir) as conn:
        tickets = [row["ticket"] for row in conn.execute(
            "SELECT ticket FROM wechat_ticket WHERE appid = ? AND expires_at > ?",
            (appid, time.time()))]
    if any(secrets.compare_digest(signature_of(t, nonce, timestamp, url), signature)
           for t in tickets):
        return None
    return "config:fail,invalid signature"


def make_jssdk_routes(settings, appid: str) -> list[BaseRoute]:
    var_dir = settings.var_dir

    async def body_of(request: Request) -> dict | None:
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def config(request: Request) -> JSONResponse:
        body = await body_of(request)
        if body is None:
            return JSONResponse({"errMsg": "config:fail,invalid arguments"}, status_code=400)
        error = await run_in_threadpool(check_config, var_dir, appid, settings.base_url,
                                        body.get("config"), body.get("url"))
        if error:
            return JSONResponse({"errMsg": error}, status_code=403)
        return JSONResponse({"errMsg": "config:ok"})

    async def subscribe(request: Request) -> JSONResponse:
        body = await body_of(request)
        if body is None:
            return JSONResponse({"errMsg": "subscribe:fail,invalid arguments"}, status_code=400)
        error = await run_in_threadpool(check_config, var_dir, appid, settings.base_url,
                                        body.get("config"), body.get("url"))
        if error:
            return JSONResponse({"errMsg": error.replace("config:", "subscribe:"),
                                 "errCode": 403}, status_code=403)
        templates = body.get("templates")
        if (not isinstance(templates, list) or not 0 < len(templates) <= MAX_TEMPLATES
                or any(t not in SANDBOX_TEMPLATES for t in templates)):
            return JSONResponse({"errMsg": "subscribe:fail,invalid template", "errCode": 400},
                                status_code=400)
        rid, engine = resident_id(request), request.app.state.engine

        def grant() -> str | None:
            with transaction(engine, read_only=True) as session:
                resident = get_resident(session, rid)
                openid = resident.openid if resident is not None else None
            if openid:
                for template_id in dict.fromkeys(templates):
                    grant_subscription(var_dir, openid, template_id)
            return openid

        if not await run_in_threadpool(grant):
            return JSONResponse({"errMsg": "subscribe:fail,no WeChat user", "errCode": 403},
                                status_code=403)
        details = {t: json.dumps({"status": "accept"}) for t in dict.fromkeys(templates)}
        return JSONResponse({"errMsg": "subscribe:ok", "subscribeDetails": json.dumps(details)})

    return [
        Route(JSSDK_PATH + "/config", config, methods=["POST"], name="sandbox_jssdk_config"),
        Route(JSSDK_PATH + "/subscribe", subscribe, methods=["POST"],
              name="sandbox_jssdk_subscribe"),
    ]
