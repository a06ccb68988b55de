"""Client channels: one place for the options every caller of a PanDA mesh service uses, and
for attaching the caller's bearer token to every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from panda_runtime.client.credentials import TokenSource
from panda_runtime.settings import CallerSettings

# Keepalive lets a pilot notice a dead server (and the server a dead pilot) on a quiet stream.
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]

# Default deadline of a unary call, seconds.
DEFAULT_DEADLINE_SECONDS = 30.0


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


def channel_credentials(settings: CallerSettings) -> grpc.ChannelCredentials | None:
    """TLS towards servers on the legacy x509 path (with this caller's certificate, if any)."""
    if not settings.tls_ca_file:
        return None

    def read(path: str) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(settings.tls_ca_file),
        private_key=read(settings.x509_key_file),
        certificate_chain=read(settings.x509_cert_file),
    )


def sync_channel(
    address: str,
    tokens: TokenSource | None = None,
    *,
    tls: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A channel whose calls carry `tokens`' bearer token (when given)."""
    all_options = [*CHANNEL_OPTIONS, *(options or [])]
    if tls is None:
        channel = grpc.insecure_channel(address, options=all_options)
    else:
        channel = grpc.secure_channel(address, tls, options=all_options)
    if tokens is None:
        return channel
    return grpc.intercept_channel(channel, _SyncBearer(tokens))


def aio_channel(
    address: str,
    tokens: TokenSource | None = None,
    *,
    tls: grpc.ChannelCredentials | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.aio.Channel:
    """An asyncio channel whose calls carry `tokens`' bearer token (when given)."""
    all_options = [*CHANNEL_OPTIONS, *(options or [])]
    interceptors = (
        [_AioBearerUnaryUnary(tokens), _AioBearerUnaryStream(tokens), _AioBearerStreamStream(tokens)]
        if tokens is not None
        else None
    )
    if tls is None:
        return grpc.aio.insecure_channel(address, options=all_options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, tls, options=all_options, interceptors=interceptors)


def error_message(error: grpc.RpcError) -> str:
    """`CODE: message` of a failed call, for people."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return f"{code.name if code else 'ERROR'}: {details}"
