"""What the gateway writes: messages in protobuf's JSON mapping (every field, populated or not;
enums by name; 64-bit integers as strings), errors as a `google.rpc.Status`, and a stream's
messages as newline-delimited JSON or as server-sent events."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from monitor_gateway.domain import json_plans

__all__ = [
    "CURSOR_FIELD", "RESUME_FIELD", "event_cursor", "message_document", "message_json", "metadata_headers",
    "ndjson_error", "ndjson_result", "prepare_json", "sse_comment", "sse_error", "sse_result", "status",
    "status_json",
]

# Imported so that the typed details services attach (BadRequest, ResourceInfo, ErrorInfo, ...)
# are known to the JSON printer: a detail it cannot name would fail the whole error.
_DETAIL_TYPES = error_details_pb2

# A stream resumes after the cursor its events carry: Last-Event-ID fills the request's
# `after_cursor`, and each server-sent event's id is its message's `cursor`.
RESUME_FIELD = "after_cursor"
CURSOR_FIELD = "cursor"


def message_document(message: Message) -> dict[str, Any]:
    return json_plans.message_document(message)


def prepare_json(message_types: Iterable[Descriptor]) -> None:
    """Readies the JSON conversion of these message types before the first request."""
    json_plans.prepare(message_types)


def message_json(message: Message) -> bytes:
    return orjson.dumps(message_document(message))


def status(code: int, message: str, details: list[Message] | None = None) -> status_pb2.Status:
    result = status_pb2.Status(code=code, message=message)
    for detail in details or ():
        result.details.add().Pack(detail)
    return result


def _status_document(value: status_pb2.Status) -> dict[str, Any]:
    try:
        return message_document(value)
    except (json_format.SerializeToJsonError, TypeError, KeyError):
        # A detail of a type this process does not know: the code and message still tell.
        return {"code": value.code, "message": value.message, "details": []}


def status_json(value: status_pb2.Status) -> bytes:
    return orjson.dumps(_status_document(value))


def ndjson_result(message: Message) -> bytes:
    return orjson.dumps({"result": message_document(message)}) + b"\n"


def ndjson_error(value: status_pb2.Status) -> bytes:
    return orjson.dumps({"error": _status_document(value)}) + b"\n"


def sse_result(message: Message) -> bytes:
    cursor = event_cursor(message)
    head = f"id: {cursor}\n".encode() if cursor is not None else b""
    return head + b"data: " + message_json(message) + b"\n\n"


def sse_error(value: status_pb2.Status) -> bytes:
    return b"event: error\ndata: " + status_json(value) + b"\n\n"


def sse_comment(text: str) -> bytes:
    """A line every client ignores, which keeps a quiet stream's connection from timing out."""
    return f": {text}\n\n".encode()


def event_cursor(message: Message) -> int | None:
    """The cursor a streamed message carries: its own `cursor` field, or that of the message
    it wraps (`WatchJobsResponse.event.cursor`)."""
    fields = message.DESCRIPTOR.fields_by_name
    if CURSOR_FIELD in fields:
        return int(getattr(message, CURSOR_FIELD))
    for field in message.DESCRIPTOR.fields:
        if field.message_type is not None and not field.is_repeated and \
                CURSOR_FIELD in field.message_type.fields_by_name and message.HasField(field.name):
            return int(getattr(getattr(message, field.name), CURSOR_FIELD))
    return None



def metadata_headers(metadata: Iterable[tuple[str, str | bytes]]) -> dict[str, str]:
    """The header metadata a service sent, as grpc-gateway writes it: `Grpc-Metadata-<key>`,
    a binary (`-bin`) value in base64, a key sent twice as one header of both values."""
    headers: dict[str, str] = {}
    for key, value in metadata:
        text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        name = f"Grpc-Metadata-{key}"
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers
