"""Static assets with versioned URLs, kept a year, sent compressed; and gzip for the pages.

`static_url("app.css")` → `/static/app.css?v=<first 12 hex of its SHA-256>`: a new file gives a
new URL, so a URL carrying its file's current version is cached for a year as immutable; any
other (no `v`, or an old one) is served with `no-cache` and revalidated by its ETag. Text assets
are gzipped once per file version (level 9), held in memory (the directory is small), and sent
so when the browser accepts gzip.

`PageGZip` compresses the dynamic responses (pages, htmx fragments) but leaves the payment
notify URLs and the stand-ins of the providers' APIs untouched: their replies are a few bytes
in a wire format the provider reads, never worth a change."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path

from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from app.settings import ROOT
from standins.paths import (SANDBOX_GATEWAY_PATH, SMS_STANDIN_PATH, WECHAT_MESSAGES_STANDIN_PATH,
                            WECHAT_STANDIN_PATH)

STATIC_DIR = ROOT / "static"
STATIC_PREFIX = "/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = ("text/", "application/javascript", "image/svg+xml", "application/json")
VERSION_CHARS = 12


@dataclass(frozen=True)
class Asset:
    key: tuple[int, int]  # (mtime_ns, size): the file as read
    version: str
    media_type: str
    body: bytes
    gzipped: bytes | None  # None: not worth it (not text, or no smaller)


class Assets:
    """The files of the static directory, read and hashed once per change of the file."""

    def __init__(self, directory: Path = STATIC_DIR):
        self.directory = Path(directory)
        self._cache: dict[str, Asset] = {}

    def load(self, full_path: str | os.PathLike, stat: os.stat_result | None = None) -> Asset:
        full_path = os.fspath(full_path)
        stat = stat or os.stat(full_path)
        key = (stat.st_mtime_ns, stat.st_size)
        asset = self._cache.get(full_path)
        if asset is None or asset.key != key:
            with open(full_path, "rb") as f:
                body = f.read()
            media_type = mimetypes.guess_type(full_path)[0] or "application/octet-stream"
            if media_type.startswith("text/") or media_type in ("application/javascript",
                                                                "image/svg+xml"):
                media_type += "; charset=utf-8"
            gzipped = None
            if media_type.startswith(COMPRESSIBLE) and len(body) > 256:
                packed = gzip.compress(body, compresslevel=9, mtime=0)
                gzipped = packed if len(packed) < len(body) else None
            asset = Asset(key, hashlib.sha256(body).hexdigest()[:VERSION_CHARS], media_type,
                          body, gzipped)
            self._cache[full_path] = asset
        return asset

    def url(self, name: str) -> str:
        """The versioned URL of static/<name> (a template's `static_url('app.css')`)."""
        return f"{STATIC_PREFIX}{name}?v={self.load(self.directory / name).version}"


ASSETS = Assets()


def static_url(name: str) -> str:
    return ASSETS.url(name)


class VersionedStaticFiles(StaticFiles):
    """StaticFiles (its path checks, 404 and 405) answering from `Assets`: versioned URLs are
    immutable for a year, others revalidate; gzip when accepted; ETag and 304."""

    def __init__(self, *, assets: Assets = ASSETS, **kwargs):
        super().__init__(directory=str(assets.directory), **kwargs)
        self.assets = assets

    def file_response(self, full_path, stat_result, scope, status_code: int = 200) -> Response:
        if status_code != 200:  # html mode's 404.html: not ours
            return super().file_response(full_path, stat_result, scope, status_code)
        asset = self.assets.load(full_path, stat_result)
        request_headers = Headers(scope=scope)
        asked = dict(item.split("=", 1) for item in
                     scope.get("query_string", b"").decode("latin-1").split("&") if "=" in item)
        headers = {
            "cache-control": IMMUTABLE if asked.get("v") == asset.version else REVALIDATE,
            "vary": "Accept-Encoding",
        }
        compressed = (asset.gzipped is not None
                      and "gzip" in request_headers.get("accept-encoding", ""))
        etag = f'"{asset.version}{"-gz" if compressed else ""}"'
        headers["etag"] = etag
        if etag in [t.strip() for t in request_headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        if compressed:
            headers["content-encoding"] = "gzip"
        return Response(asset.gzipped if compressed else asset.body, headers=headers,
                        media_type=asset.media_type)


async def favicon(request) -> Response:
    """/favicon.ico, which browsers ask for on their own: the icon, kept for a day."""
    asset = ASSETS.load(ASSETS.directory / "favicon.ico")
    return Response(asset.body, media_type="image/x-icon",
                    headers={"cache-control": "public, max-age=86400"})


NOT_COMPRESSED = ("/notify/", STATIC_PREFIX, WECHAT_STANDIN_PATH, SANDBOX_GATEWAY_PATH,
                  SMS_STANDIN_PATH, WECHAT_MESSAGES_STANDIN_PATH)


class PageGZip(GZipMiddleware):
    """Starlette's GZipMiddleware (level 6: pages are small; skips bodies under 500 bytes and
    streams) for everything but the notify URLs, the stand-ins' server APIs and the static files
    (already compressed, above)."""

    def __init__(self, app, minimum_size: int = 500, compresslevel: int = 6, **kwargs):
        super().__init__(app, minimum_size=minimum_size, compresslevel=compresslevel, **kwargs)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(NOT_COMPRESSED):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
