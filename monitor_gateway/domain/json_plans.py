"""Messages as protobuf's JSON (what `json_format.MessageToDict(message,
always_print_fields_with_no_presence=True)` makes), from a plan made once per message type.

`json_format` looks up each field's type, name and presence anew for every field of every
message; a page of 100 jobs took it longer than the server took to read them. A plan is a
function compiled once per message type with one expression per field (its JSON name, how its
value converts, whether it is printed only when present), so converting a message tests nothing
about its fields. Timestamps are formatted here too, each second's text made once. Well-known
types other than Timestamp and Duration (Any, Struct, Value, wrappers, FieldMask, Empty) go to
`json_format` itself; the tests compare the two on every response type the gateway serves.
"""

from __future__ import annotations

import base64
import datetime
import keyword
import math
import struct
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["message_document", "prepare"]

Converter = Callable[[Any], Any]

_INT64 = frozenset({FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
                    FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64})


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


def _enum_names(field: FieldDescriptor) -> dict[int, str]:
    enum = field.enum_type
    assert enum is not None
    return {value.number: value.name for value in enum.values}


def _enum(field: FieldDescriptor) -> Converter:
    names = _enum_names(field)

    def convert(value: int) -> Any:
        return names.get(value, value)  # a number the enum does not name is printed as a number

    return convert


# Timestamp's range in its JSON form: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
_FIRST_SECOND, _LAST_SECOND = -62135596800, 253402300799
_EPOCH = datetime.datetime(1970, 1, 1)


# Each second's text, made once: a page of jobs holds many timestamps of a few seconds. A plain
# dict (emptied when full) costs a third of what `functools.lru_cache` does per look-up.
_SECOND_TEXTS: dict[int, str] = {}
_MAX_SECOND_TEXTS = 65536


def _second_text(seconds: int) -> str:
    if len(_SECOND_TEXTS) >= _MAX_SECOND_TEXTS:
        _SECOND_TEXTS.clear()
    text = _SECOND_TEXTS[seconds] = (_EPOCH + datetime.timedelta(seconds=seconds)).isoformat()
    return text


def _timestamp(value: Any) -> str:
    """`Timestamp.ToJsonString()`'s text: 0, 3, 6 or 9 digits of fraction, as few as hold it."""
    seconds, nanos = value.seconds, value.nanos
    if not (_FIRST_SECOND <= seconds <= _LAST_SECOND and 0 <= nanos < 1_000_000_000):
        return str(value.ToJsonString())  # refuses the value as json_format does
    text = _SECOND_TEXTS.get(seconds) or _second_text(seconds)
    if nanos == 0:
        return text + "Z"
    # The fraction's digits, zero-padded, from the decimal text of 10**k + fraction.
    if nanos % 1_000_000 == 0:
        return f"{text}.{str(1_000 + nanos // 1_000_000)[1:]}Z"
    if nanos % 1_000 == 0:
        return f"{text}.{str(1_000_000 + nanos // 1_000)[1:]}Z"
    return f"{text}.{str(1_000_000_000 + nanos)[1:]}Z"


def _duration(value: Message) -> Any:
    return value.ToJsonString()  # type: ignore[attr-defined]


def _well_known(value: Message) -> Any:
    return json_format.MessageToDict(value, always_print_fields_with_no_presence=True)


def _single(field: FieldDescriptor) -> Converter:
    """The converter of one value of `field` (an element, for a repeated field)."""
    nested = field.message_type
    if nested is not None:
        if nested.full_name == "google.protobuf.Timestamp":
            return _timestamp
        if nested.full_name == "google.protobuf.Duration":
            return _duration
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


_PLANS: dict[str, Callable[[Message], dict[str, Any]]] = {}


def _attribute(name: str) -> str:
    """The expression reading field `name` of the message `m` (a Python keyword needs getattr)."""
    return f"getattr(m, {name!r})" if keyword.iskeyword(name) else f"m.{name}"


def _plan(descriptor: Descriptor | Any) -> Callable[[Message], dict[str, Any]]:
    """The converter of one message type: a function compiled from the type's fields, one
    expression per field, as `dataclasses` and `attrs` compile theirs, so that converting a
    message runs no loop and no test per field."""
    full_name = descriptor.full_name
    found = _PLANS.get(full_name)
    if found is not None:
        return found

    # Registered before the fields are planned: a message type may contain itself, and until
    # its own function exists it is reached through this one.
    def forward(message: Message) -> dict[str, Any]:
        return _PLANS[full_name](message)

    _PLANS[full_name] = forward
    namespace: dict[str, Any] = {"isfinite": math.isfinite}

    def name_of(value_of: object) -> str:
        key = f"c{len(namespace)}"
        namespace[key] = value_of
        return key

    entries: list[str] = []
    optional: list[str] = []
    for field in descriptor.fields:
        json_name, value = repr(field.json_name), _attribute(field.name)
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            key_field, value_field = nested.fields_by_name["key"], nested.fields_by_name["value"]
            key_of, value_of = _map_key(key_field), _single(value_field)
            # Iterating a map's keys runs in C; its items() view iterates in Python.
            if key_field.type == FieldDescriptor.TYPE_STRING and value_of is _same:
                items = "{k: x[k] for k in x}"
            else:
                items = f"{{{name_of(key_of)}(k): {name_of(value_of)}(x[k]) for k in x}}"
            # An empty container is common and costs far less to test than to iterate.
            entries.append(f"{json_name}: {items} if (x := {value}) else {{}}")
            continue
        single = _single(field)
        if field.is_repeated:
            items = "x[:]" if single is _same else "[str(v) for v in x]" if single is _int64 \
                else f"[{name_of(single)}(v) for v in x]"
            entries.append(f"{json_name}: {items} if (x := {value}) else []")
            continue
        # The commonest conversions are written out rather than called: a call costs more than they do.
        if single is _same:
            expression = value
        elif single is _int64:
            expression = f"str({value})"
        elif field.enum_type is not None:
            expression = f"{name_of(_enum_names(field))}.get((v := {value}), v)"
        elif single is _double:
            expression = f"v if isfinite(v := {value}) else {name_of(_double)}(v)"
        else:
            expression = f"{name_of(single)}({value})"
        if field.has_presence:
            optional.append(f"    if m.HasField({field.name!r}):\n        d[{json_name}] = {expression}")
        else:
            entries.append(f"{json_name}: {expression}")
    source = "\n".join(["def convert(m):", "    d = {", *(f"        {entry}," for entry in entries), "    }",
                        *optional, "    return d"])
    # The source holds only names from the descriptor (identifiers, and JSON names as literals).
    exec(compile(source, f"<json plan of {full_name}>", "exec"), namespace)
    convert: Callable[[Message], dict[str, Any]] = namespace["convert"]
    _PLANS[full_name] = convert
    return convert


def message_document(message: Message) -> dict[str, Any]:
    """`message` as protobuf's JSON, every field without presence printed, populated or not."""
    if message.DESCRIPTOR.full_name.startswith("google.protobuf."):
        document: dict[str, Any] = _well_known(message)
        return document
    return _plan(message.DESCRIPTOR)(message)


def prepare(message_types: Iterable[Descriptor]) -> None:
    """Compiles the plans of these message types (and of the types they contain) now, so that
    no request waits for one."""
    for descriptor in message_types:
        if not descriptor.full_name.startswith("google.protobuf."):
            _plan(descriptor)
