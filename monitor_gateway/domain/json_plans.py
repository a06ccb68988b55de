"""Messages as protobuf's JSON (what `json_format.MessageToDict(message,
always_print_fields_with_no_presence=True)` makes), from a plan made once per message type.

`json_format` looks up each field's type, name and presence anew for every field of every
message; a page of 100 jobs took it longer than the server took to read them. A plan is the list
of a type's fields, each with its JSON name and the function that converts its value, so that
converting a message is one loop over ready functions. Well-known types other than Timestamp and
Duration (Any, Struct, Value, wrappers, FieldMask, Empty) go to `json_format` itself; the tests
compare the two on every response type the gateway serves.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["message_document"]

Converter = Callable[[Any], Any]

_INT64 = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_TIME_TYPES = frozenset({"google.protobuf.Timestamp", "google.protobuf.Duration"})


def _same(value: Any) -> Any:
    return value


def _int64(value: int) -> str:
    return str(value)


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _double(value: float) -> Any:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _float(value: float) -> Any:
    """A 32-bit float as its shortest decimal that reads back as the same float (json_format's rule)."""
    if not math.isfinite(value):
        return _double(value)
    precision = 6
    rounded = float(f"{value:.{precision}g}")
    while _as_float32(rounded) != value and precision < 17:
        precision += 1
        rounded = float(f"{value:.{precision}g}")
    return rounded


def _as_float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


def _enum(field: FieldDescriptor) -> Converter:
    enum = field.enum_type
    assert enum is not None
    names = {value.number: value.name for value in enum.values}

    def convert(value: int) -> Any:
        return names.get(value, value)

    return convert


def _time(value: Message) -> Any:
    return value.ToJsonString()  # type: ignore[attr-defined]


def _well_known(value: Message) -> Any:
    return json_format.MessageToDict(value, always_print_fields_with_no_presence=True)


def _single(field: FieldDescriptor) -> Converter:
    """The converter of one value of `field` (an element, for a repeated field)."""
    nested = field.message_type
    if nested is not None:
        if nested.full_name in _TIME_TYPES:
            return _time
        if nested.full_name.startswith("google.protobuf."):
            return _well_known
        return _plan(nested)
    if field.enum_type is not None:
        return _enum(field)
    kind = field.type
    if kind in _INT64:
        return _int64
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return _double
    if kind == FieldDescriptor.TYPE_FLOAT:
        return _float
    return _same


def _map_key(field: FieldDescriptor) -> Converter:
    if field.type == FieldDescriptor.TYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


def _map_item(key_of: Converter, value_of: Converter) -> Converter:
    def convert(item: tuple[Any, Any]) -> tuple[Any, Any]:
        return key_of(item[0]), value_of(item[1])

    return convert


_PLANS: dict[str, Callable[[Message], dict[str, Any]]] = {}


def _plan(descriptor: Descriptor | Any) -> Callable[[Message], dict[str, Any]]:
    found = _PLANS.get(descriptor.full_name)
    if found is not None:
        return found
    # The fields by how they convert, so converting a message runs no test per field: values
    # taken as they are, values converted, fields printed only when present, lists, maps.
    plain: list[tuple[str, str]] = []
    converted: list[tuple[str, str, Converter]] = []
    present: list[tuple[str, str, Converter]] = []
    plain_lists: list[tuple[str, str]] = []
    lists: list[tuple[str, str, Converter]] = []
    maps: list[tuple[str, str, Converter]] = []

    def convert(message: Message) -> dict[str, Any]:
        document = {json_name: getattr(message, name) for name, json_name in plain}
        for name, json_name, value_of in converted:
            document[json_name] = value_of(getattr(message, name))
        for name, json_name, value_of in present:
            if message.HasField(name):
                document[json_name] = value_of(getattr(message, name))
        for name, json_name in plain_lists:
            document[json_name] = list(getattr(message, name))
        for name, json_name, value_of in lists:
            document[json_name] = [value_of(item) for item in getattr(message, name)]
        for name, json_name, item_of in maps:
            document[json_name] = dict(item_of(item) for item in getattr(message, name).items())
        return document

    # Placed before the fields are planned: a message type may contain itself.
    _PLANS[descriptor.full_name] = convert
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            key_of = _map_key(nested.fields_by_name["key"])
            value_of = _single(nested.fields_by_name["value"])
            maps.append((field.name, field.json_name, _map_item(key_of, value_of)))
            continue
        value_of = _single(field)
        if field.is_repeated:
            if value_of is _same:
                plain_lists.append((field.name, field.json_name))
            else:
                lists.append((field.name, field.json_name, value_of))
        elif field.has_presence:
            present.append((field.name, field.json_name, value_of))
        elif value_of is _same:
            plain.append((field.name, field.json_name))
        else:
            converted.append((field.name, field.json_name, value_of))
    return convert


def message_document(message: Message) -> dict[str, Any]:
    """`message` as protobuf's JSON, every field without presence printed, populated or not."""
    if message.DESCRIPTOR.full_name.startswith("google.protobuf."):
        document: dict[str, Any] = _well_known(message)
        return document
    return _plan(message.DESCRIPTOR)(message)
