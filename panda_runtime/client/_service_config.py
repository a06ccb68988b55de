"""The gRPC service config a client's channel carries: which of its services' RPCs gRPC may
retry on its own, and how.

An RPC is safe to repeat when it is unary and either a read (its HTTP mapping is GET: no side
effects, AIP-131/132) or a create whose request carries a `request_id` (the service returns what
the first call made instead of making it again; the caller must set the id). Both are read from
the contracts' descriptors, so a new RPC is classed by its declaration, not by a list here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from panda_runtime.client.config import RetryPolicy

# Large requests (a batch of 5,000 jobs) stay retryable: gRPC keeps up to this much of a call's
# request to send it again (its default, 256 KiB, would commit such calls to their first attempt).
RETRY_BUFFER_BYTES = 64 * 1024 * 1024


def is_safe_to_repeat(method: MethodDescriptor) -> bool:
    if method.client_streaming or method.server_streaming:
        return False
    http_rule = method.GetOptions().Extensions[annotations_pb2.http]
    return http_rule.WhichOneof("pattern") == "get" or "request_id" in method.input_type.fields_by_name


def retryable_methods(services: Iterable[ServiceDescriptor]) -> list[MethodDescriptor]:
    return [method for service in services for method in service.methods if is_safe_to_repeat(method)]


def _duration(seconds: float) -> str:
    """Seconds as a protobuf JSON Duration ("0.25s")."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def service_config(services: Iterable[ServiceDescriptor], retry: RetryPolicy) -> dict[str, Any]:
    methods = retryable_methods(services)
    if not retry.enabled or not methods:
        return {}
    return {
        "methodConfig": [
            {
                "name": [{"service": m.containing_service.full_name, "method": m.name} for m in methods],
                "retryPolicy": {
                    "maxAttempts": retry.max_attempts,
                    "initialBackoff": _duration(retry.initial_backoff),
                    "maxBackoff": _duration(retry.max_backoff),
                    "backoffMultiplier": retry.backoff_multiplier,
                    "retryableStatusCodes": [code.name for code in retry.retryable_codes],
                },
            }
        ]
    }


def retry_options(services: Iterable[ServiceDescriptor], retry: RetryPolicy) -> list[tuple[str, Any]]:
    """Channel options that make gRPC retry the safe RPCs of `services` by `retry`."""
    options: list[tuple[str, Any]] = [("grpc.enable_retries", 1)]
    config = service_config(services, retry)
    if config:
        options += [("grpc.service_config", json.dumps(config)), ("grpc.per_rpc_retry_buffer_size", RETRY_BUFFER_BYTES)]
    return options
