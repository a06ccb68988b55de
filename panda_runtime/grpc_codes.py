"""The `grpc_code` label of the gRPC metrics, on both sides of a call: a status code's name as
go-grpc-prometheus writes it (Go's `codes.Code.String()`: "OK", "NotFound", "Canceled", ...), so
dashboards and alerts written for any gRPC service read ours too."""

from __future__ import annotations

import grpc

__all__ = ["code_label"]

_GO_NAMES = {code: "".join(part.capitalize() for part in code.name.split("_")) for code in grpc.StatusCode}
_GO_NAMES[grpc.StatusCode.OK] = "OK"
_GO_NAMES[grpc.StatusCode.CANCELLED] = "Canceled"  # Go's spelling


def code_label(code: grpc.StatusCode) -> str:
    return _GO_NAMES[code]
