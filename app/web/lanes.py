"""The payment providers' notify URLs past the middleware that has nothing to do for them.

A notification is a POST from a provider's server to a fixed path: no cookies, no language, no
CSRF (its signature is its proof), no page to compress, no route to look for among the
resident's and console's. Under a storm every notification went through all of that, and the
router's dozens of patterns, before its view: a tenth of the server's CPU per notification
(bench.notify). `NotifyLane`, the outermost middleware but Starlette's error handler, hands a
POST to a notify path straight to what it does need, in the same order as every other request:
its request id (`RequestIds`), its timing by route (`RequestTimer`, with the route set as the
router sets it), its body limit (`BodyLimit`), HSTS when the site is HTTPS
(`ResidentSecurityHeaders`), then the view. Anything else (another method, another path) goes
the whole way as before; an error in the view reaches Starlette's error handler as before.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from app.logs import RequestIds
from app.resident.security import ResidentSecurityHeaders
from app.web.limits import BodyLimit
from app.web.metrics import RequestTimer


class NotifyLane:
    """`routes`: the app's notify routes (POST only), whose views are called directly."""

    def __init__(self, app, routes: list[Route], https: bool) -> None:
        self.app = app
        self.lanes = {}
        for route in routes:
            if route.methods != {"POST"}:
                raise ValueError(f"{route.path}: a notify route takes POST alone")
            self.lanes[route.path] = RequestIds(RequestTimer(BodyLimit(
                ResidentSecurityHeaders(_Endpoint(route), https=https))))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            lane = self.lanes.get(scope["path"])
            if lane is not None and not scope.get("root_path"):
                await lane(scope, receive, send)
                return
        await self.app(scope, receive, send)


class _Endpoint:
    """A route's view as the router would run it: the route in the scope (for `RequestTimer`'s
    label), the view called with the request, its response sent."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.view = route.endpoint

    async def __call__(self, scope, receive, send):
        scope["route"] = self.route
        scope["endpoint"] = self.view
        scope["path_params"] = {}
        response = await self.view(Request(scope, receive, send))
        await response(scope, receive, send)
