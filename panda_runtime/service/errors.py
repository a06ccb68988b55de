"""Errors that domain code raises and the error interceptor turns into gRPC status codes,
with google.rpc details where a client can act on them."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from panda_runtime.contracts import Violation

__all__ = [
    "AlreadyExists", "FailedPrecondition", "InvalidArgument", "NotFound", "PermissionDenied", "ResourceExhausted",
    "ServiceError", "Unauthenticated", "Unavailable", "clip", "ok_status",
]


# A status travels in trailing metadata (its message percent-encoded, its details in base64),
# which gRPC caps at 8 KiB: a message that quotes a long input is cut to fit.
MAX_MESSAGE_BYTES = 1000
MAX_DESCRIPTION_BYTES = 500


def clip(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, with an ellipsis when cut."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text
    return encoded[: limit - 3].decode("utf-8", "ignore") + "..."


class ServiceError(Exception):
    """Base of every error a caller is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, details: list | None = None) -> None:
        message = clip(message)
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        for detail in self.details:
            packed = any_pb2.Any()
            packed.Pack(detail)
            status.details.append(packed)
        return status


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, message: str, *, field: str = "") -> None:
        details = []
        if field:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=clip(field, MAX_DESCRIPTION_BYTES), description=clip(message, MAX_DESCRIPTION_BYTES))
            details.append(error_details_pb2.BadRequest(field_violations=[violation]))
        super().__init__(message, details=details)

    @classmethod
    def of(cls, violation: Violation) -> InvalidArgument:
        """A contract's rule broken (panda_runtime.contracts), as the status the caller gets."""
        return cls(str(violation), field=violation.field)


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, message: str, *, resource_type: str = "", resource_name: str = "") -> None:
        details = []
        if resource_type:
            details.append(
                error_details_pb2.ResourceInfo(resource_type=resource_type,
                                               resource_name=clip(resource_name, MAX_DESCRIPTION_BYTES))
            )
        super().__init__(message, details=details)


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    """A forbidden state change; the message names the current state."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, subject: str = "", violation_type: str = "STATE") -> None:
        violation = error_details_pb2.PreconditionFailure.Violation(
            type=violation_type, subject=clip(subject, MAX_DESCRIPTION_BYTES),
            description=clip(message, MAX_DESCRIPTION_BYTES),
        )
        super().__init__(message, details=[error_details_pb2.PreconditionFailure(violations=[violation])])


class Unauthenticated(ServiceError):
    """No identity, or one that cannot be trusted (missing, expired or badly signed token)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(ServiceError):
    """A known caller asking for more than its roles allow."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


def ok_status() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.OK)
