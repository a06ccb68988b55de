"""Server interceptors every service installs: the token check and access table, error mapping,
Prometheus metrics and logging. Each wraps a handler's behaviour, for all four RPC kinds."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from panda_runtime.contracts import Violation
from panda_runtime.grpc_codes import code_label
from panda_runtime.service.auth import Authenticator
from panda_runtime.service.db import is_unavailable
from panda_runtime.service.errors import InvalidArgument, ServiceError, Unavailable, clip
from panda_runtime.service.principals import AccessTable, set_current_principal

__all__ = [
    "HANDLED", "HANDLING_SECONDS", "MSG_RECEIVED", "MSG_SENT", "STARTED", "Around", "Behavior", "ServiceInterceptor",
]

log = logging.getLogger("panda.rpc")

# Named as go-grpc-prometheus names them, so existing dashboards work.
STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.", ["grpc_type", "grpc_service", "grpc_method"]
)
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, regardless of success or failure.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Response latency of RPCs handled by the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600),
)
# Every message counts, a unary call's one request and one response too (the response only when
# the call succeeded), as go-grpc-prometheus counts them.
MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total", "RPC messages received on the server (a unary call's request included).",
    ["grpc_type", "grpc_service", "grpc_method"],
)
MSG_SENT = Counter(
    "grpc_server_msg_sent_total", "RPC messages sent by the server (a unary call's response included).",
    ["grpc_type", "grpc_service", "grpc_method"],
)

Behavior = Callable[..., Any]
# Runs around one call: (method, request-or-iterator, context, call) -> result.
Around = Callable[[str, Any, grpc.aio.ServicerContext, Callable[[Any], Any]], Any]


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _answer_for(error: Exception, method: str) -> ServiceError | None:
    """The status an error is answered with: what the caller did wrong (a ServiceError, or a
    contract's rule broken), or the database out of reach (UNAVAILABLE, which clients retry);
    None for anything else (a fault of the service's own). Logged in one line, no traceback:
    none is needed to read it."""
    if isinstance(error, Violation):
        error = InvalidArgument.of(error)
    if isinstance(error, ServiceError):
        log.info("%s: %s: %s", method, error.code.name, clip(error.message, 300))
        return error
    if is_unavailable(error):
        cause = getattr(error, "orig", None) or error
        log.warning("%s: the database is unavailable: %s: %s", method, type(cause).__name__,
                    clip(str(cause).strip().splitlines()[0] if str(cause).strip() else "", 300))
        return Unavailable("the database is unavailable; try again later")
    return None


async def _abort_for(error: Exception, context: grpc.aio.ServicerContext, method: str) -> None:
    answer = _answer_for(error, method)
    if answer is not None:
        status = rpc_status.to_status(answer.to_status())
        await context.abort(status.code, status.details, status.trailing_metadata)
    # The caller learns that it failed and under which id; what failed (which may quote the
    # database or the caller's data) stays in the service's log under that id.
    error_id = uuid.uuid4().hex[:12]
    log.exception("unexpected error in %s (error id %s)", method, error_id)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (error id {error_id}); the service's log has "
                                                  "the details")


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the caller and checks the service's access table, maps ServiceError (and
    a contract's Violation) to its status with details and a database outage to UNAVAILABLE,
    records go-grpc-prometheus metrics, and answers anything else INTERNAL with an error id
    that the log's traceback carries too."""

    def __init__(
        self, authenticator: Authenticator, access: AccessTable, open_methods: frozenset[str] = frozenset()
    ):
        self._authenticator = authenticator
        self._access = access
        # Health answers anyone.
        self._open_methods = open_methods

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        found = await continuation(handler_call_details)
        if found is None:
            return None
        # gRPC's handlers are namedtuples, replaced field by field below; its type stubs do not say so.
        handler: Any = found
        method = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata or ())
        rpc_type = _rpc_type(handler)
        service, name = _split(method)
        labels = (rpc_type, service, name)
        open_method = service in self._open_methods or method in self._open_methods

        async def authenticate(context: grpc.aio.ServicerContext) -> None:
            if open_method:
                return
            principal = await self._authenticator.authenticate(method, metadata, context)
            self._access.check(method, principal)
            set_current_principal(principal)

        def finish(code: grpc.StatusCode, started: float) -> None:
            HANDLED.labels(*labels, code_label(code)).inc()
            HANDLING_SECONDS.labels(*labels).observe(time.perf_counter() - started)

        def final_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
            code = context.code()
            if isinstance(code, grpc.StatusCode):
                return code
            return grpc.StatusCode.OK if code in (None, 0) else _code_from_int(code)

        received, sent = MSG_RECEIVED.labels(*labels), MSG_SENT.labels(*labels)

        async def count_in(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for request in requests:
                received.inc()
                yield request

        if not handler.response_streaming:
            inner: Behavior = handler.unary_unary or handler.stream_unary

            async def unary_response(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
                STARTED.labels(*labels).inc()
                started = time.perf_counter()
                try:
                    if handler.request_streaming:
                        request_or_iterator = count_in(request_or_iterator)
                    else:
                        received.inc()
                    await authenticate(context)
                    response = await inner(request_or_iterator, context)
                    sent.inc()
                    return response
                except Exception as error:
                    if _is_abort(error):
                        raise
                    await _abort_for(error, context, method)
                finally:
                    finish(final_code(context), started)

            if handler.request_streaming:
                return handler._replace(stream_unary=unary_response)
            return handler._replace(unary_unary=unary_response)

        inner_stream: Behavior = handler.unary_stream or handler.stream_stream

        async def stream_response(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            STARTED.labels(*labels).inc()
            started = time.perf_counter()
            try:
                if handler.request_streaming:
                    request_or_iterator = count_in(request_or_iterator)
                else:
                    received.inc()
                await authenticate(context)
                async for response in inner_stream(request_or_iterator, context):
                    sent.inc()
                    yield response
            except Exception as error:
                if _is_abort(error):
                    raise
                await _abort_for(error, context, method)
            finally:
                finish(final_code(context), started)

        if handler.request_streaming:
            return handler._replace(stream_stream=stream_response)
        return handler._replace(unary_stream=stream_response)


def _is_abort(error: Exception) -> bool:
    # context.abort() raises this to unwind the handler; it is not a failure of ours.
    return type(error).__name__ == "AbortError"


def _code_from_int(value: int) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == value:
            return code
    return grpc.StatusCode.UNKNOWN
