"""A limit on every request body, by path: an oversize request gets 413 before its body is
read (its Content-Length says so) or as soon as what arrives passes the limit (a chunked body);
the handler never sees it. Plain ASGI, outermost but for Starlette's error handler."""

from __future__ import annotations

from starlette.responses import PlainTextResponse

KB = 1024
MB = 1024 * KB
DEFAULT_BODY_LIMIT = 64 * KB  # any form: a top-up, a setting, a reason
# Longest prefix wins. The providers' notifications are 1–3 KB (WeChat Pay's encrypted JSON
# with its headers outside the body; Alipay's signed form): a few KB more than any real one.
BODY_LIMITS = {
    "/notify/": 16 * KB,
    "/manage/holidays": 256 * KB,  # a year's arrangement file: a few KB
    "/manage/import": 20 * MB,  # an estate workbook: 10,000 households are about 1 MB
}


class TooLarge(Exception):
    pass


def body_limit(path: str, limits: dict[str, int] = BODY_LIMITS,
               default: int = DEFAULT_BODY_LIMIT) -> int:
    best = max((p for p in limits if path.startswith(p)), key=len, default=None)
    return limits[best] if best is not None else default


class BodyLimit:
    def __init__(self, app, limits: dict[str, int] | None = None,
                 default: int = DEFAULT_BODY_LIMIT):
        self.app = app
        self.limits = BODY_LIMITS if limits is None else limits
        self.default = default

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"], self.limits, self.default)
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await _too_large(scope, receive, send, limit)
                    return
                break
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge()
            return message

        async def watched_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except TooLarge:
            if started:  # the app answered before reading it all: nothing more to say
                return
            await _too_large(scope, receive, send, limit)


async def _too_large(scope, receive, send, limit: int) -> None:
    size = f"{limit // MB} MB" if limit % MB == 0 else f"{limit} bytes"
    reply = PlainTextResponse(f"上传的内容太大（上限 {size}）；request body too large (limit {size})",
                              status_code=413,
                              headers={"connection": "close"})
    await reply(scope, receive, send)
