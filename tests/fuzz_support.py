"""What the fuzz test of every RPC (tests/test_fuzz_rpcs.py) builds on: the RPCs, read from the
contracts' descriptors, and Hypothesis strategies for any request message, made from its
descriptor: every string, number, enum, repeated and map field, and nested messages, with the
values that broke services before (NUL, very long text, unicode, negative and huge numbers,
NaN, infinities, crafted page tokens and filters)."""

from __future__ import annotations

import base64
import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from panda_runtime.service.pagination import encode_token

# The contracts whose services are fuzzed; a service added to one of them is fuzzed too.
PACKAGES = ("panda.server.v1", "panda.harvester.v1", "panda.jedi.v1", "panda.iam.v1")
# Nested messages deeper than this are left unset.
MAX_DEPTH = 4
F = FieldDescriptor


@dataclass(frozen=True)
class Rpc:
    package: str
    method: MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def name(self) -> str:
        return f"{self.method.containing_service.name}.{self.method.name}"

    def request_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.input_type)

    def response_class(self) -> type[Message]:
        return message_factory.GetMessageClass(self.method.output_type)


def rpcs() -> Iterator[Rpc]:
    """Every RPC of every service the packages define, found in their generated modules."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
            if not info.name.endswith("_pb2"):
                continue
            generated = importlib.import_module(f"{package}.{info.name}")
            for service in generated.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    yield Rpc(package, method)


def _long(alphabet: str) -> st.SearchStrategy[str]:
    return st.builds(lambda char, count: char * count, st.sampled_from(alphabet),
                     st.sampled_from([64, 65, 255, 256, 257, 300, 1025, 2000, 4097, 70_000, 140_000]))


def _token(position: Any, query: str = "") -> str:
    return encode_token(position, query)


# Strings that meant something to some service, or broke one.
NOTABLE_STRINGS = [
    "", " ", "local", "parked", "alice", "bob", "admin", "panda-jedi", "/panda", "/panda/admin", "*", ".", "..",
    "../etc/passwd", "a b", "A=B", "a\x00b", "\x00", "é", "日本", "🙂", "users/alice", "groups/panda", "file:///tmp",
    "user.fuzz.ds", "fuzz.in", "{dataset}._{serial}", "{task_id:>999999999}", "${IN}",
]
# The queries List methods bind their page tokens to (a filter, or what else they page by);
# most requests have no filter, so most tokens are bound to "".
_TOKEN_QUERIES = ("", "", "", "", "fuzz.in|0", "users|", "groups", "clients", "status=", "state = RUNNING")
_POSITIONS = ([], {"before": "abc"}, {"before": 10**30}, {"after": -1}, {"after": "x" * 5000}, {"after": 2**63},
              {"before": 1.5}, {"before": True}, {"after": "a\x00"}, {"before": None}, {"after": "abc"})
# Page tokens a client made up, in the shape of real ones (so that their content is what is wrong).
PAGE_TOKENS = [
    *(_token(position, query) for query in _TOKEN_QUERIES for position in _POSITIONS),
    base64.urlsafe_b64encode(b"[" * 5000).decode(), "%%%", "e30", "eyJwIjp7fSwicSI6MX0",
]
FILTERS = [
    "state = RUNNING", 'label = "\\x"', 'label = "\\u12"', "job_id = 99999999999999999999999", 'task_name = "mc.*"',
    "priority >= 5", 'owner = "a\\x00"', 'label = "\\ud800"', "task_id > 1e99", 'create_time > "9999-12-31T23:59:59Z"',
    'create_time > "0001-01-01T00:00:00-14:00"', "state = NOPE", "kind = INPUT AND dataset_id = \"fuzz.*\"",
    " AND ".join(["job_id > 1"] * 40), "priority = -9223372036854775808",
]
# Values tried more often in fields of these names: made-up tokens and filters, and names of what
# exists (the seed data), so that a request gets past its look-ups to the code behind them.
BY_FIELD_NAME: dict[str, list[str]] = {
    "page_token": PAGE_TOKENS, "filter": FILTERS, "queue": ["local"], "queue_id": ["local"], "queues": ["local"],
    "dataset_id": ["fuzz.in"], "input_datasets": ["fuzz.in"], "user_id": ["alice", "bob"], "group": ["/panda"],
    "client_id": ["panda-jedi"], "owner": ["alice", "bob"],
}
IDS_BY_FIELD_NAME = frozenset({"job_id", "task_id", "job_ids", "after_cursor"})


def strings(field_name: str = "") -> st.SearchStrategy[str]:
    special = BY_FIELD_NAME.get(field_name, [])
    return st.one_of(
        *([st.sampled_from(special)] * 3 if special else []),
        st.sampled_from(NOTABLE_STRINGS),
        st.text(max_size=30),
        st.text(alphabet=st.characters(codec="utf-8", categories=("Cc", "Zs", "Po", "Lo", "So")), max_size=20),
        _long("xé\x00 /=."),
    )


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, -1, 2, 10, 100_001, 2**31 - 1, -(2**31), 2**32 - 1, 2**53 + 1, 2**63 - 1, -(2**63),
                         2**64 - 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high), st.integers(max(low, -5), min(high, 50)))


_NUMBERS: dict[int, st.SearchStrategy[Any]] = {
    F.TYPE_INT32: _integers(-(2**31), 2**31 - 1), F.TYPE_SINT32: _integers(-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: _integers(-(2**31), 2**31 - 1), F.TYPE_INT64: _integers(-(2**63), 2**63 - 1),
    F.TYPE_SINT64: _integers(-(2**63), 2**63 - 1), F.TYPE_SFIXED64: _integers(-(2**63), 2**63 - 1),
    F.TYPE_UINT32: _integers(0, 2**32 - 1), F.TYPE_FIXED32: _integers(0, 2**32 - 1),
    F.TYPE_UINT64: _integers(0, 2**64 - 1), F.TYPE_FIXED64: _integers(0, 2**64 - 1),
    F.TYPE_DOUBLE: st.one_of(st.sampled_from([float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e308]),
                             st.floats()),
    F.TYPE_FLOAT: st.floats(width=32),
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_BYTES: st.binary(max_size=40),
}
# A repeated number field is sometimes a list longer than any service takes.
_HUGE_LIST = list(range(1, 100_002))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        return strings(field.name)
    if field.type == F.TYPE_ENUM:
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-3, 40))
    if field.name in IDS_BY_FIELD_NAME:
        return st.one_of(st.integers(1, 3), st.integers(1, 3), _NUMBERS[field.type])
    return _NUMBERS[field.type]


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE:
        if field.message_type.GetOptions().map_entry:
            key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
            return st.dictionaries(_scalar(key), _value(value, depth + 1), max_size=4)
        return _message(field.message_type, depth + 1)
    return _scalar(field)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        return _value(field, depth)
    if field.is_repeated:
        items = st.lists(_value(field, depth), max_size=4)
        if field.type in _NUMBERS and field.type not in (F.TYPE_DOUBLE, F.TYPE_FLOAT, F.TYPE_BOOL, F.TYPE_BYTES):
            return st.one_of(items, st.just(_HUGE_LIST))
        return items
    return _value(field, depth)


def _message(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message | None]:
    if depth > MAX_DEPTH:
        return st.none()
    cls = message_factory.GetMessageClass(descriptor)
    # Most fields left unset, so that some requests are sound but for one or two fields and get
    # past the first check to the code behind it; of a oneof, one member or none.
    fields: dict[str, st.SearchStrategy[Any]] = {
        f.name: st.one_of(st.none(), st.none(), _field(f, depth)) for f in descriptor.fields
        if f.containing_oneof is None
    }
    for oneof in descriptor.oneofs:
        members = [st.tuples(st.just(f.name), _field(f, depth)) for f in oneof.fields]
        fields[f"oneof {oneof.name}"] = st.one_of(st.none(), *members)
    return st.builds(lambda values: _fill(cls(), values), st.fixed_dictionaries(fields))


def _fill(message: Message, values: dict[str, Any]) -> Message:
    descriptor = message.DESCRIPTOR
    for name, value in values.items():
        if value is None:
            continue
        if name.startswith("oneof "):
            name, value = value
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if field.type == F.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                elif item is not None:
                    target[key] = item
        elif field.is_repeated:
            if field.type == F.TYPE_MESSAGE:
                target.extend(item for item in value if item is not None)
            else:
                target.extend(value)
        elif field.type == F.TYPE_MESSAGE:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def requests(rpc: Rpc) -> st.SearchStrategy[Message]:
    """Requests of the RPC: its request message with any of its fields set to anything."""
    return _message(rpc.method.input_type, 0).map(lambda m: m if m is not None else rpc.request_class()())
