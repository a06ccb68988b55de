"""An HTTP request as the RPC's request message, as grpc-gateway builds it: the body (the whole
message for `body: "*"`, one field for `body: "field"`), then the path's variables, then, for
every field neither of them binds, the query (`a.b=1`, a repeated field's key repeated).

JSON is protobuf's own mapping (field names as written in the .proto or in lowerCamelCase, enums
by name or number, 64-bit integers as strings or numbers); a field the message does not have is
refused, in the body and in the query alike, rather than ignored: a misspelt filter must not
return everything.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from monitor_gateway.domain.routes import Route

__all__ = ["RequestError", "build_request", "message_class", "parse_grpc_timeout"]

# The query's and the path's values of these message types are their JSON strings.
_WELL_KNOWN_FROM_TEXT = frozenset({
    "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask",
    "google.protobuf.StringValue", "google.protobuf.BytesValue", "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
    "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.BoolValue",
})
_INTEGERS = frozenset({
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
})
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_NO_FIELD = re.compile(r'has no field named "([^"]+)"')
_MAX_ERROR = 300


@dataclass
class RequestError(ValueError):
    """What the caller sent cannot be the request: 400, INVALID_ARGUMENT, naming `field`."""

    field: str
    message: str

    def __str__(self) -> str:
        return self.message


def message_class(descriptor: Descriptor) -> type[Message]:
    return GetMessageClass(descriptor)


def _short(error: Exception) -> str:
    """json_format's message without its list of every field of the message."""
    text = str(error).split("\n", 1)[0].strip()
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."


def _field(descriptor: Descriptor | Any, name: str) -> FieldDescriptor | None:
    found = descriptor.fields_by_name.get(name)
    if found is None:
        found = next((f for f in descriptor.fields if f.json_name == name), None)
    return found


def _walk(message: Message, path: str) -> tuple[Message, FieldDescriptor, str]:
    """The message holding the leaf of the dotted `path` (its intermediate messages made
    present), the leaf's field, and the path in proto names."""
    parts = path.split(".")
    names: list[str] = []
    for position, part in enumerate(parts):
        field = _field(message.DESCRIPTOR, part)
        if field is None:
            raise RequestError(path, f"{path}: {message.DESCRIPTOR.name} has no field {part!r}")
        names.append(field.name)
        if position == len(parts) - 1:
            return message, field, ".".join(names)
        if field.message_type is None or field.is_repeated:
            raise RequestError(path, f"{path}: {'.'.join(names)} is not a message one can go into")
        message = getattr(message, field.name)
    raise RequestError(path, f"{path}: empty field path")


def _scalar(field: FieldDescriptor, text: str, path: str) -> Any:
    """`text` (from a path or a query) as the value of `field`."""
    kind = field.type
    try:
        if kind == FieldDescriptor.TYPE_STRING:
            return text
        if kind in _INTEGERS:
            return int(text)
        if kind == FieldDescriptor.TYPE_BOOL:
            lowered = text.lower()
            if lowered in ("true", "1"):
                return True
            if lowered in ("false", "0"):
                return False
            raise ValueError("expected true or false")
        if kind in _FLOATS:
            return float(text)
        enum = field.enum_type
        if kind == FieldDescriptor.TYPE_ENUM and enum is not None:
            value = enum.values_by_name.get(text)
            if value is not None:
                return value.number
            number = int(text)
            if enum.values_by_number.get(number) is None and not _open_enum(field):
                raise ValueError("no such value")
            return number
    except ValueError as error:
        raise RequestError(path, f"{path}: {text!r} is not a valid {_type_name(field)} ({error})") from None
    raise RequestError(path, f"{path}: a {_type_name(field)} cannot be given in the path or the query")


def _open_enum(field: FieldDescriptor) -> bool:
    return not getattr(field.enum_type, "is_closed", False)


def _type_name(field: FieldDescriptor) -> str:
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        names = ", ".join(value.name for value in field.enum_type.values)
        return f"{field.enum_type.name} (one of {names})"
    return {
        FieldDescriptor.TYPE_STRING: "string", FieldDescriptor.TYPE_BOOL: "boolean",
        FieldDescriptor.TYPE_BYTES: "bytes (base64)",
    }.get(field.type, "integer" if field.type in _INTEGERS else "number")


def _assign(message: Message, path: str, texts: Sequence[str]) -> str:
    """Sets the field at `path` from the text values; returns the path in proto names."""
    parent, field, proto_path = _walk(message, path)
    repeated = field.is_repeated
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        raise RequestError(path, f"{path}: a map cannot be given in the path or the query; send it in the body")
    if not repeated and len(texts) > 1:
        raise RequestError(path, f"{path}: given {len(texts)} times; it takes one value")
    if field.type == FieldDescriptor.TYPE_BYTES or (
            field.message_type is not None and field.message_type.full_name in _WELL_KNOWN_FROM_TEXT):
        values: Any = list(texts) if repeated else texts[0]
        if field.message_type is not None and field.message_type.full_name == "google.protobuf.BoolValue":
            values = [_bool_text(t, path) for t in texts] if repeated else _bool_text(texts[0], path)
        holder = type(parent)()
        try:
            json_format.ParseDict({field.json_name: values}, holder)
        except json_format.ParseError as error:
            raise RequestError(path, f"{path}: {_short(error)}") from None
        parent.MergeFrom(holder)
        return proto_path
    if field.message_type is not None:
        raise RequestError(path, f"{path}: a {field.message_type.full_name} cannot be given in the path or "
                                 "the query; name one of its fields (`{path}.field=`) or send it in the body")
    converted = [_scalar(field, text, path) for text in texts]
    try:
        if repeated:
            getattr(parent, field.name).extend(converted)
        else:
            setattr(parent, field.name, converted[0])
    except (ValueError, TypeError) as error:
        raise RequestError(path, f"{path}: {texts[0]!r} is out of range for a {_type_name(field)} ({error})") from None
    return proto_path


def _bool_text(text: str, path: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "false", "0"):
        return lowered in ("true", "1")
    raise RequestError(path, f"{path}: {text!r} is not a boolean")


def _parse_body(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError("body", f"the body is not JSON: {error}") from None


def _fill_from_body(request: Message, route: Route, document: Any) -> None:
    if not route.body:
        return
    if route.body == "*":
        if document is None:
            return
        if not isinstance(document, dict):
            raise RequestError("body", f"the body must be a JSON object ({request.DESCRIPTOR.name})")
        target, field_name = request, "body"
        data: dict[str, Any] = document
    else:
        field = request.DESCRIPTOR.fields_by_name[route.body]
        if document is None:
            return
        target, field_name = request, route.body
        data = {field.json_name: document}
    try:
        json_format.ParseDict(data, target)
    except json_format.ParseError as error:
        text = _short(error)
        unknown = _NO_FIELD.search(text)
        named = unknown.group(1) if unknown else field_name
        if route.body != "*" and unknown:
            named = f"{route.body}.{named}"
        raise RequestError(named, f"{named}: {text}") from None
    if route.http_method == "PATCH" and route.body != "*" and isinstance(document, dict):
        _fill_update_mask(request, route.body, document)


def _fill_update_mask(request: Message, body_field: str, document: dict[str, Any]) -> None:
    """A PATCH whose body is one field and whose request has an empty `update_mask`: the mask
    names the fields the body sets (grpc-gateway does the same)."""
    mask_field = request.DESCRIPTOR.fields_by_name.get("update_mask")
    if mask_field is None or mask_field.message_type is None or \
            mask_field.message_type.full_name != "google.protobuf.FieldMask":
        return
    mask = getattr(request, "update_mask")  # noqa: B009 - Message declares no fields
    if mask.paths:
        return
    body_type = request.DESCRIPTOR.fields_by_name[body_field].message_type
    if body_type is None:
        return
    for key in document:
        field = _field(body_type, key)
        if field is not None:
            mask.paths.append(field.name)


def build_request(route: Route, variables: dict[str, str], query: Sequence[tuple[str, str]],
                  body: bytes) -> Message:
    """The request message of `route` from the path's `variables`, the `query` pairs and the `body`."""
    request = message_class(route.request_type)()
    document = _parse_body(body) if route.body else None
    if not route.body and body.strip():
        raise RequestError("body", f"{route.http_method} {route.template.text} takes no body; "
                                   "its fields go in the query")
    _fill_from_body(request, route, document)
    bound: set[str] = set()
    for path, value in variables.items():
        if not value:
            raise RequestError(path, f"{path}: empty in the path")
        bound.add(_assign(request, path, [value]))
    if query:
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            grouped.setdefault(key, []).append(value)
        for key, values in grouped.items():
            if route.body == "*":
                raise RequestError(key, f"{key}: {route.http_method} {route.template.text} takes every field "
                                        "from the body, none from the query")
            proto_path = _walk(request, key)[2]
            if proto_path in bound or (route.body and (proto_path == route.body
                                                       or proto_path.startswith(route.body + "."))):
                raise RequestError(key, f"{key}: already given in the path or the body")
            _assign(request, key, values)
    return request


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(text: str) -> float:
    """A `Grpc-Timeout` header (gRPC's format: up to 8 digits and a unit, `500m`, `10S`) in seconds."""
    value, unit = text[:-1], text[-1:]
    if unit not in _TIMEOUT_UNITS or not value.isdigit() or len(value) > 8 or int(value) == 0:
        raise RequestError("Grpc-Timeout", f"Grpc-Timeout: {text!r} is not a timeout (1 to 8 digits and one of "
                                           "H, M, S, m, u, n: `500m`, `10S`)")
    return int(value) * _TIMEOUT_UNITS[unit]
