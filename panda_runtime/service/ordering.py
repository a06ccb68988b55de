"""Sorting and grouping for List and Count methods: `order_by` in AIP-132's syntax
(`"create_time desc, job_id"`), the position a sorted page ends at (what its page token holds),
and `group_by` field names. Pure: the SQL is `panda_runtime.service.listing`'s."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.filtering import convert_value
from panda_runtime.service.pagination import decode_token, encode_token

__all__ = ["MAX_GROUP_BY", "MAX_SORT_KEYS", "Ordering", "SortKey", "decode_page", "encode_page", "parse_group_by",
           "parse_order_by"]

# A sort of more keys than this is no view anyone reads; each key is one more column compared.
MAX_SORT_KEYS = 4
MAX_GROUP_BY = 4
_ITEM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?", re.IGNORECASE)


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool


@dataclass(frozen=True)
class Ordering:
    """The keys rows are sorted by, the last always the id: so rows have one order, and a page
    ends at one row (keyset pagination on the keys' values and the id)."""

    keys: tuple[SortKey, ...]

    @property
    def is_default(self) -> bool:
        """Newest first: the id alone, descending."""
        return len(self.keys) == 1 and self.keys[0].descending

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(key.field for key in self.keys)


def parse_order_by(text: str, fields: Mapping[str, Any], id_field: str) -> Ordering:
    """`text` as AIP-132 writes it: field names, each optionally followed by `asc` or `desc`,
    separated by commas; empty is newest first (`<id> desc`). The id closes every ordering, in
    the direction of the key before it, unless named (keys after it could never matter and are
    dropped). Raises INVALID_ARGUMENT naming `order_by`."""
    if not text.strip():
        return Ordering((SortKey(id_field, True),))
    if len(text) > 1024 or "\x00" in text:
        raise InvalidArgument("order_by is longer than 1,024 characters or holds a NUL", field="order_by")
    keys: list[SortKey] = []
    for item in text.split(","):
        match = _ITEM.fullmatch(item.strip())
        if not match:
            raise InvalidArgument(
                f"order_by: cannot read {item.strip()!r}; write fields with an optional asc or desc, "
                "separated by commas, e.g. \"create_time desc, " + id_field + "\"", field="order_by"
            )
        name, direction = match.group(1), (match.group(2) or "asc").lower()
        if name not in fields:
            raise InvalidArgument(f"order_by: cannot sort by {name!r}; sortable: {', '.join(sorted(fields))}",
                                  field="order_by")
        if any(key.field == name for key in keys):
            raise InvalidArgument(f"order_by names {name!r} twice", field="order_by")
        keys.append(SortKey(name, direction == "desc"))
        if name == id_field:
            return Ordering(tuple(keys))
        if len(keys) > MAX_SORT_KEYS:
            raise InvalidArgument(f"order_by: at most {MAX_SORT_KEYS} fields", field="order_by")
    return Ordering((*keys, SortKey(id_field, keys[-1].descending)))


def parse_group_by(names: Sequence[str], fields: Sequence[str]) -> tuple[str, ...]:
    """The fields a Count method groups by, checked: known, each once, at most MAX_GROUP_BY."""
    if len(names) > MAX_GROUP_BY:
        raise InvalidArgument(f"group_by: at most {MAX_GROUP_BY} fields", field="group_by")
    for index, name in enumerate(names):
        if name not in fields:
            raise InvalidArgument(f"group_by: cannot group by {name[:64]!r}; known: {', '.join(fields)}",
                                  field=f"group_by[{index}]")
        if name in names[:index]:
            raise InvalidArgument(f"group_by names {name!r} twice", field=f"group_by[{index}]")
    return tuple(names)


def _query(filter_text: str, order_by: str) -> str:
    """What a page token is bound to: the filter, and the order when one was asked for (so
    tokens of the default order are what they were before order_by existed)."""
    return filter_text if not order_by else f"{filter_text}\x00order_by={order_by}"


def _text(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return str(value)


def encode_page(ordering: Ordering, last: Mapping[str, Any], filter_text: str, order_by: str) -> str:
    """The token of the page after the row whose sort-key values are `last` (field -> value)."""
    # The id closes every order: a number (job_id, task_id), or a unique name (a dataset's).
    identity = last[ordering.keys[-1].field]
    if ordering.is_default and not isinstance(identity, str):
        return encode_token({"before": int(identity)}, _query(filter_text, order_by))
    position: dict[str, Any] = {"id": identity if isinstance(identity, str) else int(identity)}
    for index, key in enumerate(ordering.keys[:-1]):
        position[f"k{index}"] = _text(last[key.field])
    return encode_token(position, _query(filter_text, order_by))


def decode_page(token: str, ordering: Ordering, kinds: Mapping[str, Any], filter_text: str,
                order_by: str) -> tuple[Any, ...] | None:
    """The sort-key values (with the id last) of the row a token's page starts after, or None
    for the first page. A token of another filter or order is INVALID_ARGUMENT naming
    `page_token`, and so is one whose values are not of their fields' kinds."""
    named = ordering.keys[:-1]
    id_kind = str if kinds.get(ordering.keys[-1].field) is str else int
    id_name = "before" if ordering.is_default and id_kind is int else "id"
    shape: dict[str, type] = {id_name: id_kind, **{f"k{i}": str for i in range(len(named))}}
    position = decode_token(token, _query(filter_text, order_by), shape)
    if not position:
        return None
    if set(position) != set(shape):
        raise InvalidArgument("page_token is not one this service issued", field="page_token")
    values: list[Any] = []
    for index, key in enumerate(named):
        try:
            values.append(convert_value(key.field, position[f"k{index}"], kinds[key.field]))
        except InvalidArgument as error:
            raise InvalidArgument("page_token is not one this service issued", field="page_token") from error
    return (*values, position[id_name])
