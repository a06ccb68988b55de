"""Client channels: one place for the options every caller of a PanDA mesh service uses, for
attaching the caller's bearer token to every call, for a default deadline on unary calls, and
for the client-side gRPC metrics of a service calling another (`metrics=True`; see
`panda_runtime.client.metrics`). Most callers want a client of `panda_runtime.client.service`,
which builds its channel here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from panda_runtime.client.credentials import TokenSource

__all__ = ["CHANNEL_OPTIONS", "aio_channel", "error_message", "sync_channel"]

# Keepalive lets a pilot notice a dead server (and the server a dead pilot) on a quiet stream.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def _with_token(details: Any, tokens: TokenSource) -> Any:
    """The call's details with the channel's token, unless the call brings its own."""
    metadata = list(details.metadata or ())
    if any(key == "authorization" for key, _ in metadata):
        return details
    return details._replace(metadata=[*metadata, ("authorization", f"Bearer {tokens.token()}")])


class _SyncBearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(_with_token(details, self._tokens), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(_with_token(details, self._tokens), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(_with_token(details, self._tokens), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(_with_token(details, self._tokens), requests)


class _SyncDefaultDeadline(grpc.UnaryUnaryClientInterceptor):
    """Gives unary calls that name no deadline this one; streams keep theirs (often none)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        if details.timeout is None:
            details = details._replace(timeout=self._seconds)
        return continuation(details, request)


class _AioDefaultDeadline(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        if details.timeout is None:
            details = details._replace(timeout=self._seconds)
        return await continuation(details, request)


class _AioBearerUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    async def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._tokens), request)


class _AioBearerUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    async def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._tokens), request)


class _AioBearerStreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    async def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return await continuation(_with_token(details, self._tokens), requests)


def sync_channel(
    address: str,
    tokens: TokenSource | None = None,
    *,
    tls: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
    deadline: float | None = None,
    metrics: bool = False,
) -> grpc.Channel:
    """A channel whose calls carry `tokens`' bearer token (when given), whose unary calls
    that name no deadline get `deadline` seconds (when given), and whose calls count in the
    `grpc_client_*` metrics when `metrics`."""
    all_options = [*CHANNEL_OPTIONS, *(options or [])]
    if tls is None:
        channel = grpc.insecure_channel(address, options=all_options)
    else:
        channel = grpc.secure_channel(address, tls, options=all_options)
    interceptors: list[Any] = []
    if metrics:
        from panda_runtime.client.metrics import sync_interceptor

        interceptors.append(sync_interceptor())
    if tokens is not None:
        interceptors.append(_SyncBearer(tokens))
    if deadline is not None:
        interceptors.append(_SyncDefaultDeadline(deadline))
    return grpc.intercept_channel(channel, *interceptors) if interceptors else channel


def aio_channel(
    address: str,
    tokens: TokenSource | None = None,
    *,
    tls: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
    deadline: float | None = None,
    metrics: bool = False,
) -> grpc.aio.Channel:
    """An asyncio channel whose calls carry `tokens`' bearer token (when given), whose unary
    calls that name no deadline get `deadline` seconds (when given), and whose calls count in
    the `grpc_client_*` metrics when `metrics`."""
    all_options = [*CHANNEL_OPTIONS, *(options or [])]
    interceptors: list[grpc.aio.ClientInterceptor] = []
    if metrics:
        # Loaded only by the processes that ask for it: the command line serves no metrics.
        from panda_runtime.client.metrics import aio_interceptors

        interceptors += aio_interceptors()
    if tokens is not None:
        interceptors += [_AioBearerUnaryUnary(tokens), _AioBearerUnaryStream(tokens), _AioBearerStreamStream(tokens)]
    if deadline is not None:
        interceptors.append(_AioDefaultDeadline(deadline))
    if tls is None:
        return grpc.aio.insecure_channel(address, options=all_options, interceptors=interceptors or None)
    return grpc.aio.secure_channel(address, tls, options=all_options, interceptors=interceptors or None)


def error_message(error: grpc.RpcError) -> str:
    """`CODE: message` of a failed call, for people."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return f"{code.name if code else 'ERROR'}: {details}"
