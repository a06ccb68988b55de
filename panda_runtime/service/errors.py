"""Errors that domain code raises and the error interceptor turns into gRPC status codes,
with google.rpc details where a client can act on them."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

__all__ = [
    "AlreadyExists", "FailedPrecondition", "InvalidArgument", "NotFound", "PermissionDenied", "ResourceExhausted",
    "ServiceError", "Unauthenticated", "Unavailable", "ok_status",
]


class ServiceError(Exception):
    """Base of every error a caller is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, details: list | None = None) -> None:
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
            violation = error_details_pb2.BadRequest.FieldViolation(field=field, description=message)
            details.append(error_details_pb2.BadRequest(field_violations=[violation]))
        super().__init__(message, details=details)


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, message: str, *, resource_type: str = "", resource_name: str = "") -> None:
        details = []
        if resource_type:
            details.append(
                error_details_pb2.ResourceInfo(resource_type=resource_type, resource_name=resource_name)
            )
        super().__init__(message, details=details)


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(ServiceError):
    """A forbidden state change; the message names the current state."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, message: str, *, subject: str = "", violation_type: str = "STATE") -> None:
        violation = error_details_pb2.PreconditionFailure.Violation(
            type=violation_type, subject=subject, description=message
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
