"""Client channels: one place for the options every caller of a PanDA mesh service uses."""

from __future__ import annotations

import grpc

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


def sync_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def aio_channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)


def error_message(error: grpc.RpcError) -> str:
    """`CODE: message` of a failed call, for people."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    return f"{code.name if code else 'ERROR'}: {details}"
