"""A failed call, said for people: one exception type for every client."""

from __future__ import annotations

import grpc

from panda_runtime.client.channels import error_message

__all__ = ["ServiceError"]

# Phrases of gRPC core's messages for calls that never reached a server.
_CONNECT_FAILURES = (
    "failed to connect to all addresses",
    "Connection refused",
    "errors resolving",
    "DNS resolution failed",
    "No route to host",
    "Network is unreachable",
)
# Codes a call gets both from a server and from not reaching one.
_AMBIGUOUS_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class ServiceError(Exception):
    """A call to a service failed. `str()` is for people: `CODE: message` from the service, or
    `cannot reach <target> at <address> (<hint>)` when nothing answered there."""

    def __init__(self, message: str, *, code: grpc.StatusCode | None, address: str, unreachable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.address = address
        self.unreachable = unreachable


def _code_of(error: grpc.RpcError) -> grpc.StatusCode | None:
    code = error.code() if hasattr(error, "code") else None
    return code if isinstance(code, grpc.StatusCode) else None


def _never_connected(error: grpc.RpcError) -> bool | None:
    """True when gRPC says the call never reached a server, False when a server answered, None
    when the code alone cannot tell (the caller then checks whether the channel connects)."""
    if _code_of(error) not in _AMBIGUOUS_CODES:
        return False
    details = (error.details() if hasattr(error, "details") else "") or ""
    if any(phrase in details for phrase in _CONNECT_FAILURES):
        return True
    return None


def _unreachable(*, target: str, address: str, hint: str, code: grpc.StatusCode | None) -> ServiceError:
    message = f"cannot reach {target} at {address}" + (f" ({hint})" if hint else "")
    return ServiceError(message, code=code, address=address, unreachable=True)


def _service_error(error: grpc.RpcError, *, target: str, address: str, hint: str, unreachable: bool) -> ServiceError:
    code = _code_of(error)
    if unreachable:
        return _unreachable(target=target, address=address, hint=hint, code=code)
    return ServiceError(error_message(error), code=code, address=address, unreachable=False)
