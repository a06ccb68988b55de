"""List filters in the style of AIP-160 for every List method, limited to a conjunction of
comparisons, with `*` in a string compared by `=` or `!=` as a wildcard:
`state = RUNNING AND queue = "local" AND create_time > "2026-01-01T00:00:00Z"`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panda_runtime.contracts.rules import INT64_MAX
from panda_runtime.service.errors import InvalidArgument

__all__ = ["MAX_COMPARISONS", "MAX_FILTER_LENGTH", "OPERATORS", "Comparison", "int32", "like_pattern",
           "parse_filter", "parse_time", "unescape"]

OPERATORS = ("<=", ">=", "!=", "=", "<", ">")
# A filter is a handful of comparisons; these bound what one request can make a query of.
MAX_FILTER_LENGTH = 4096
MAX_COMPARISONS = 32
# Escapes in a string literal: \uXXXX, \UXXXXXXXX, \xXX, or one character (\n, \t, \", ...).
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x[0-9A-Fa-f]{2}|[uUx]|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}

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


def int32(text: str) -> int:
    """A filter's value for a 32-bit integer column (`int` is for 64-bit ones): a number the
    column cannot hold would make the database refuse the query."""
    number = int(text)
    if not -(2**31) <= number < 2**31:
        raise ValueError("beyond a 32-bit integer")
    return number


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise InvalidArgument(f"not an RFC 3339 time: {text!r}", field="filter") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unescape(literal: str) -> str:
    """The value of a string literal's body: escapes replaced (\\\\, \\", \\n, \\xXX, \\uXXXX,
    \\UXXXXXXXX); an unknown escape stands for itself with its backslash, as Python reads it.
    A truncated escape, a NUL or a code point that is not a character is INVALID_ARGUMENT."""

    def replace(match: re.Match[str]) -> str:
        escape = match.group(1)
        if escape in ("u", "U", "x"):
            raise InvalidArgument(f"truncated \\{escape} escape in a filter string", field="filter")
        if len(escape) > 1:
            code = int(escape[1:], 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise InvalidArgument(f"\\{escape} is not a character", field="filter")
            return chr(code)
        return _SIMPLE_ESCAPES.get(escape, escape if escape in "\\'\"" else "\\" + escape)

    value = _ESCAPE.sub(replace, literal)
    if "\x00" in value:
        raise InvalidArgument("a filter string must not contain NUL", field="filter")
    return value


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
            value = unescape(value[1:-1])
        found.append((kind, value))
        position = match.end()
    return found


def parse_filter(text: str, fields: dict[str, type]) -> list[Comparison]:
    """Parse `text` into comparisons over `fields` (name -> int, str, datetime, or an enum
    converter callable). Raises INVALID_ARGUMENT naming what is wrong."""
    if not text.strip():
        return []
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(f"the filter is {len(text)} characters long; at most {MAX_FILTER_LENGTH}",
                              field="filter")
    if "\x00" in text:
        raise InvalidArgument("the filter contains a NUL character", field="filter")
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
        if len(comparisons) > MAX_COMPARISONS:
            raise InvalidArgument(f"at most {MAX_COMPARISONS} comparisons in a filter", field="filter")
        index += 3
        if index == len(tokens):
            return comparisons
        if tokens[index] != ("word", "AND"):
            raise InvalidArgument(f"only AND joins comparisons, found {tokens[index][1]!r}", field="filter")
        index += 1


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is int:
            number = int(raw)
            if not -INT64_MAX - 1 <= number <= INT64_MAX:
                raise InvalidArgument(f"{name}: {raw} is beyond a 64-bit integer", field="filter")
            return number
        if kind is datetime:
            return parse_time(raw)
        if kind is str:
            return raw
        return kind(raw)
    except InvalidArgument:
        raise
    except (ValueError, KeyError) as error:
        raise InvalidArgument(f"bad value {raw!r} for {name}: {error}", field="filter") from error
