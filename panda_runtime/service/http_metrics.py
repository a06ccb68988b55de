"""HTTP metrics for any Starlette (ASGI) app a service serves: the identity service's OIDC
endpoints, the HTTP gateway.

    app = Starlette(routes=..., middleware=[Middleware(HttpMetrics)])
    app.add_middleware(HttpMetrics, route_name=my_namer)     # or later, before it serves

Every request counts in `panda_http_requests_total{route,method,code}` and its time, from the
request's arrival to the end of its response's body, in
`panda_http_request_duration_seconds{route,method}`. `route` is the matched route's path
template (`/jobs/{job_id}`), never the path itself, so ids never become label values;
"unmatched" when no route matched. An app whose routes are not Starlette's own names them
itself: it puts the template the request matched into the request's scope under `ROUTE_KEY`
(`request.scope[ROUTE_KEY] = "/v1/jobs/{job_id}"`), or gives the middleware `route_name`, a
function from the scope to the template (None: no route matched). `method` is the HTTP method,
or "other" for one that is not a standard method."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HTTP_REQUESTS", "HTTP_REQUEST_SECONDS", "METHODS", "ROUTE_KEY", "UNMATCHED", "HttpMetrics", "RouteNamer",
           "starlette_route"]

HTTP_REQUESTS = Counter(
    "panda_http_requests_total", "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "code"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "panda_http_request_duration_seconds",
    "Time from an HTTP request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UNMATCHED = "unmatched"
# Where an app that routes requests itself leaves the template a request matched.
ROUTE_KEY = "panda.route"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

RouteNamer = Callable[[Scope], str | None]


def starlette_route(scope: Scope) -> str | None:
    """The template the app left under ROUTE_KEY, else the path template of the Starlette route
    the request matched (a 405 names the route its path matched), after the paths of the mounts
    it is under; a mounted app (one with no routes of its own) is `<mount>/{path:path}`. None
    when no route matched, a mount's routes included."""
    named = scope.get(ROUTE_KEY)
    if named:
        return str(named)
    route = scope.get("route")
    if route is None:
        return None
    # Mounts add the part of the path they matched to root_path, after the app's own.
    mounted = str(scope.get("root_path", ""))[len(str(scope.get("app_root_path", ""))):]
    if isinstance(route, Mount):
        return None if route.routes else f"{mounted}/{{path:path}}"
    template = getattr(route, "path", None)
    if template is None:
        return None
    return f"{mounted}{template}"


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request (see the module's doc)."""

    def __init__(self, app: ASGIApp, route_name: RouteNamer = starlette_route) -> None:
        self.app = app
        self._route_name = route_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # An exception that escaped the app is answered 500 by Starlette's outermost layer.
            route = self._name(scope)
            method = scope.get("method", "")
            method = method if method in METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(status["code"])).inc()
            HTTP_REQUEST_SECONDS.labels(route, method).observe(time.perf_counter() - started)

    def _name(self, scope: Scope) -> str:
        try:
            name = self._route_name(scope)
        except Exception:
            name = None
        return name or UNMATCHED
