"""The gateway's HTTP edge (Starlette): every annotated RPC at its route, `/openapi.json`, the
API's page at `/docs`, and `/healthz`.

A request's `Authorization` header goes to the service untouched, with every
`Grpc-Metadata-<key>` header as `<key>` (and the service's header metadata comes back as
`Grpc-Metadata-<key>` headers); `Grpc-Timeout` (gRPC's format: `500m`, `10S`) asks for
a shorter deadline than the gateway's own. Errors are `google.rpc.Status` JSON with
grpc-gateway's HTTP status. A streaming RPC answers with one JSON object per line
(`{"result": …}`, a failure as `{"error": …}`), or, when the request accepts
`text/event-stream`, with server-sent events whose ids are the stream's cursors: a client that
reconnects with `Last-Event-ID` resumes after the last event it saw.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

import orjson
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles

from monitor_gateway.domain import responses
from monitor_gateway.domain.requests import RequestError, build_request, parse_grpc_timeout
from monitor_gateway.domain.routes import Route as RpcRoute
from monitor_gateway.domain.statuses import http_status
from monitor_gateway.logic.transcoder import Metadata, OpenStream, Transcoder, UpstreamError
from monitor_gateway.servicers.docs_page import DOCS_HTML, DOCS_INIT_JS, DOCS_SECURITY_HEADERS, swagger_ui_directory
from monitor_gateway.servicers.monitor_auth import MONITOR_PATH, SESSION_TOKEN
from panda_runtime.service.http_metrics import ROUTE_KEY, HttpMetrics

__all__ = ["build_app"]

log = logging.getLogger("panda.gateway")

JSON = "application/json"
NDJSON = "application/x-ndjson"
EVENT_STREAM = "text/event-stream"
METADATA_PREFIX = "grpc-metadata-"
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+$")
# Headers gRPC reserves for itself: a caller cannot pass them as metadata.
_RESERVED = frozenset({"te", "content-type", "user-agent", "grpc-timeout", "grpc-encoding",
                       "grpc-accept-encoding", "grpc-status", "grpc-message", "grpc-status-details-bin"})


class _BodyTooLarge(Exception):
    pass


def _status_response(status: status_pb2.Status, headers: dict[str, str] | None = None) -> Response:
    extra = dict(headers or {})
    if status.code == code_pb2.UNAUTHENTICATED:
        extra.setdefault("WWW-Authenticate", 'Bearer realm="panda-mesh"')
    return Response(responses.status_json(status), status_code=http_status(status.code),
                    media_type=JSON, headers=extra)


def _bad_request(error: RequestError) -> Response:
    violation = error_details_pb2.BadRequest.FieldViolation(field=error.field, description=error.message)
    return _status_response(responses.status(code_pb2.INVALID_ARGUMENT, error.message,
                                             [error_details_pb2.BadRequest(field_violations=[violation])]))


def _metadata(request: Request) -> list[tuple[str, str | bytes]]:
    """The caller's token and `Grpc-Metadata-*` headers, as the call's metadata."""
    metadata: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in request.headers.raw:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if key == "authorization":
            metadata.append(("authorization", value))
        elif key.startswith(METADATA_PREFIX):
            name = key[len(METADATA_PREFIX):]
            if not _METADATA_KEY.match(name) or name in _RESERVED or name.startswith("grpc-") \
                    or name.endswith("-bin") or name == "authorization":
                raise RequestError(raw_key.decode("latin-1"), f"{raw_key.decode('latin-1')}: not a header the "
                                   "gateway passes on (lower-case letters, digits, `-`, `_`, `.`; not binary, "
                                   "not gRPC's own)")
            if not value.isprintable() or not value.isascii():
                raise RequestError(raw_key.decode("latin-1"), f"{raw_key.decode('latin-1')}: printable ASCII only")
            metadata.append((name, value))
    if not any(key == "authorization" for key, _ in metadata) and request.method in ("GET", "HEAD"):
        # The monitor's pages read live streams with the signed-in session's token (a browser's
        # EventSource sends no header). Only reads: a cookie never authorizes a change here,
        # where no form token guards it.
        session = request.scope.get("session")
        token = session.get(SESSION_TOKEN) if session is not None else None
        if token:
            metadata.append(("authorization", f"Bearer {token}"))
    return metadata


class GatewayApp:
    def __init__(self, transcoder: Transcoder, openapi: dict[str, Any], *, max_body_bytes: int,
                 keepalive_seconds: float) -> None:
        self._transcoder = transcoder
        self._openapi = orjson.dumps(openapi)
        self._max_body = max_body_bytes
        self._keepalive = keepalive_seconds

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _BodyTooLarge()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise _BodyTooLarge()
            chunks.append(chunk)
        return b"".join(chunks)

    async def dispatch(self, request: Request) -> Response:
        try:
            return await self._dispatch(request)
        except Exception:
            # The gateway's own fault: the caller gets an id to quote, the log the traceback.
            error_id = uuid.uuid4().hex[:12]
            log.exception("%s %s failed (error id %s)", request.method, request.url.path, error_id)
            return _status_response(responses.status(code_pb2.INTERNAL, f"internal error (error id {error_id})"))

    async def _dispatch(self, request: Request) -> Response:
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        resolved = self._transcoder.resolve(request.method, path)
        if resolved is None:
            matching = self._transcoder.table.routes_matching(path)
            if matching:
                request.scope[ROUTE_KEY] = matching[0].template.text
                allowed = self._transcoder.table.allowed_methods(path)
                return Response(responses.status_json(responses.status(code_pb2.UNIMPLEMENTED, "Method Not Allowed")),
                                status_code=405, media_type=JSON, headers={"Allow": ", ".join(allowed)})
            return _status_response(responses.status(code_pb2.NOT_FOUND, "Not Found"))
        route = resolved.route
        # The HTTP metrics count the request under its template, never its path.
        request.scope[ROUTE_KEY] = route.template.text
        try:
            body = await self._body(request)
        except _BodyTooLarge:
            return Response(responses.status_json(responses.status(
                code_pb2.INVALID_ARGUMENT, f"the body is larger than {self._max_body} bytes")),
                status_code=413, media_type=JSON)
        try:
            message = build_request(route, resolved.variables, request.query_params.multi_items(), body)
            metadata = _metadata(request)
            timeout_header = request.headers.get("grpc-timeout")
            timeout = parse_grpc_timeout(timeout_header) if timeout_header else None
            if route.server_streaming:
                self._resume(request, message)
        except RequestError as error:
            return _bad_request(error)
        if route.server_streaming:
            return await self._stream(request, route, message, metadata, timeout)
        try:
            response, response_metadata = await self._transcoder.call(route, message, metadata, timeout)
        except UpstreamError as error:
            return _status_response(error.status)
        headers = responses.metadata_headers(response_metadata)
        if route.response_body:
            return Response(orjson.dumps(responses.message_document(response)[
                response.DESCRIPTOR.fields_by_name[route.response_body].json_name]), media_type=JSON, headers=headers)
        return Response(responses.message_json(response), media_type=JSON, headers=headers)

    @staticmethod
    def _resume(request: Request, message: Message) -> None:
        """Last-Event-ID: the stream goes on after that cursor (unless the query names one)."""
        last = request.headers.get("last-event-id")
        if not last or responses.RESUME_FIELD not in message.DESCRIPTOR.fields_by_name:
            return
        if getattr(message, responses.RESUME_FIELD):
            return
        if not last.strip().isdigit():
            raise RequestError("Last-Event-ID", f"Last-Event-ID: {last!r} is not a cursor this stream gave")
        setattr(message, responses.RESUME_FIELD, int(last.strip()))

    async def _stream(self, request: Request, route: RpcRoute, message: Message, metadata: Metadata,
                      timeout: float | None) -> Response:
        events = EVENT_STREAM in request.headers.get("accept", "")
        caller = request.headers.get("authorization") or (request.client.host if request.client else "")
        try:
            stream = await self._transcoder.stream(route, message, metadata, timeout, caller)
        except UpstreamError as error:
            return _status_response(error.status)
        frames = self._events(stream) if events else self._lines(stream)
        headers = {**responses.metadata_headers(stream.headers), "Cache-Control": "no-store",
                   "X-Accel-Buffering": "no"}
        return StreamingResponse(frames, media_type=EVENT_STREAM if events else NDJSON, headers=headers)

    async def _messages(self, stream: OpenStream) -> AsyncIterator[Message | None]:
        """The stream's messages, and None each time it stays quiet for the keepalive interval."""
        pending: asyncio.Task[Message | None] | None = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(stream.next())
                done, _ = await asyncio.wait({pending}, timeout=self._keepalive)
                if not done:
                    yield None
                    continue
                message = pending.result()
                pending = None
                if message is None:
                    return
                yield message
        finally:
            if pending is not None:
                pending.cancel()
            stream.close()

    async def _lines(self, stream: OpenStream) -> AsyncIterator[bytes]:
        try:
            async for message in self._messages(stream):
                # A quiet stream: an empty line, which newline-delimited JSON readers skip.
                yield b"\n" if message is None else responses.ndjson_result(message)
        except UpstreamError as error:
            yield responses.ndjson_error(error.status)

    async def _events(self, stream: OpenStream) -> AsyncIterator[bytes]:
        yield b"retry: 1000\n\n"
        try:
            async for message in self._messages(stream):
                yield responses.sse_comment("keepalive") if message is None else responses.sse_result(message)
        except UpstreamError as error:
            yield responses.sse_error(error.status)

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi, media_type=JSON)

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(DOCS_HTML, headers=DOCS_SECURITY_HEADERS)

    async def docs_init(self, request: Request) -> Response:
        return Response(DOCS_INIT_JS, media_type="text/javascript", headers=DOCS_SECURITY_HEADERS)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "serving"})


async def _http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (a wrong method on /openapi.json) in the gateway's error shape."""
    status_code = error.status_code if isinstance(error, HTTPException) else 500
    code = {404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED}.get(status_code, code_pb2.UNKNOWN)
    headers = dict(error.headers or {}) if isinstance(error, HTTPException) else {}
    return Response(responses.status_json(responses.status(code, HTTPStatus(status_code).phrase)),
                    status_code=status_code, media_type=JSON, headers=headers)


def build_app(transcoder: Transcoder, openapi: dict[str, Any], *, max_body_bytes: int,
              keepalive_seconds: float, monitor: Starlette | None = None, session_secret: str = "",
              secure_cookies: bool = True) -> Starlette:
    """The gateway's app; with `monitor`, the web monitor at /monitor/, its session kept in a
    signed, HTTP-only cookie (`Secure` unless `secure_cookies` is off)."""
    app = GatewayApp(transcoder, openapi, max_body_bytes=max_body_bytes, keepalive_seconds=keepalive_seconds)
    middleware = [Middleware(HttpMetrics)]
    if monitor is not None:
        middleware.append(Middleware(SessionMiddleware, secret_key=session_secret, session_cookie="panda_monitor",
                                     same_site="lax", https_only=secure_cookies, max_age=12 * 3600))
    monitor_routes: list[BaseRoute] = [] if monitor is None else [
        Route(MONITOR_PATH, lambda request: RedirectResponse(MONITOR_PATH + "/", status_code=308), methods=["GET"]),
        Mount(MONITOR_PATH, monitor, name="monitor")]
    starlette = Starlette(middleware=middleware, routes=[
        *monitor_routes,
        Route("/openapi.json", app.openapi, methods=["GET"]),
        Route("/docs", app.docs, methods=["GET"]),
        Route("/docs/init.js", app.docs_init, methods=["GET"]),
        Mount("/docs/assets", StaticFiles(directory=swagger_ui_directory()), name="docs-assets"),
        Route("/healthz", app.healthz, methods=["GET"]),
    ], exception_handlers={HTTPException: _http_error})
    # Every other path, whatever its characters, is the API's: its routes are the gateway's own table.
    starlette.router.default = request_response(app.dispatch)
    return starlette
