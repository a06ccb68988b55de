"""List filters in the style of AIP-160 for every List method, limited to a conjunction of
comparisons, with `*` in a string compared by `=` or `!=` as a wildcard:
`state = RUNNING AND queue = "local" AND create_time > "2026-01-01T00:00:00Z"`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panda_runtime.service.errors import InvalidArgument

__all__ = ["OPERATORS", "Comparison", "like_pattern", "parse_filter", "parse_time"]

OPERATORS = ("<=", ">=", "!=", "=", "<", ">")

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<word>[A-Za-z0-9_.:+\-]+)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Any

    @property
    def is_pattern(self) -> bool:
        return isinstance(self.value, str) and "*" in self.value and self.op in ("=", "!=")


def like_pattern(value: str) -> str:
    """`mc23.*` -> `mc23.%` for SQL LIKE, with LIKE's own wildcards escaped (escape char `\\`)."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidArgument(f"not an RFC 3339 time: {text!r}", field="filter") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise InvalidArgument(f"cannot read the filter at {text[position:]!r}", field="filter")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].encode().decode("unicode_escape")
        found.append((kind, value))
        position = match.end()
    return found


def parse_filter(text: str, fields: dict[str, type]) -> list[Comparison]:
    """Parse `text` into comparisons over `fields` (name -> int, str, datetime, or an enum
    converter callable). Raises INVALID_ARGUMENT naming what is wrong."""
    if not text.strip():
        return []
    tokens = _tokens(text)
    comparisons: list[Comparison] = []
    index = 0
    while True:
        if index + 3 > len(tokens):
            raise InvalidArgument(f"incomplete comparison in filter {text!r}", field="filter")
        (kind_f, name), (kind_o, op), (kind_v, raw) = tokens[index : index + 3]
        if kind_f != "word" or kind_o != "op" or kind_v == "op":
            raise InvalidArgument(
                f"expected `field OP value` in filter {text!r}, e.g. state = RUNNING", field="filter"
            )
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise InvalidArgument(f"unknown filter field {name!r}; known: {known}", field="filter")
        comparisons.append(Comparison(name, op, _convert(name, raw, fields[name])))
        index += 3
        if index == len(tokens):
            return comparisons
        if tokens[index] != ("word", "AND"):
            raise InvalidArgument(f"only AND joins comparisons, found {tokens[index][1]!r}", field="filter")
        index += 1


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is int:
            return int(raw)
        if kind is datetime:
            return parse_time(raw)
        if kind is str:
            return raw
        return kind(raw)
    except InvalidArgument:
        raise
    except (ValueError, KeyError) as error:
        raise InvalidArgument(f"bad value {raw!r} for {name}: {error}", field="filter") from error
