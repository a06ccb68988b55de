"""List filters in the style of AIP-160 for every List and Count method: comparisons joined by
AND and OR, where OR binds tighter than AND (`state = RUNNING OR state = FINISHED AND queue = "a"`
is `(state = RUNNING OR state = FINISHED) AND queue = "a"`), parentheses around an OR group
allowed, and `*` in a string compared by `=` or `!=` as a wildcard where a service says so:
`state = RUNNING AND queue = "local" AND create_time > "2026-01-01T00:00:00Z"`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panda_runtime.contracts.rules import INT64_MAX
from panda_runtime.service.errors import InvalidArgument

__all__ = ["MAX_COMPARISONS", "MAX_FILTER_LENGTH", "MAX_NESTING", "OPERATORS", "Comparison", "Filter",
           "convert_value", "int32", "like_pattern", "parse_filter", "parse_time", "unescape"]

OPERATORS = ("<=", ">=", "!=", "=", "<", ">")
# A filter is a handful of comparisons; these bound what one request can make a query of.
MAX_FILTER_LENGTH = 4096
MAX_COMPARISONS = 32
MAX_NESTING = 8
# Escapes in a string literal: \uXXXX, \UXXXXXXXX, \xXX, or one character (\n, \t, \", ...).
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x[0-9A-Fa-f]{2}|[uUx]|.)", re.DOTALL)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z0-9_.:+\-]+)
    )""",
    re.VERBOSE,
)
_AND = ("word", "AND")
_OR = ("word", "OR")
_OPEN = ("paren", "(")
_CLOSE = ("paren", ")")
_KEYWORDS = frozenset({"AND", "OR"})


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Any

    @property
    def is_pattern(self) -> bool:
        return isinstance(self.value, str) and "*" in self.value and self.op in ("=", "!=")


@dataclass(frozen=True)
class Filter:
    """What a filter means: every group must hold, and a group holds when any of its
    comparisons does. No groups: every row."""

    groups: tuple[tuple[Comparison, ...], ...] = ()

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        return tuple(c for group in self.groups for c in group)

    def __bool__(self) -> bool:
        return bool(self.groups)


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


class _Reader:
    """The filter's tokens, read left to right by the grammar below."""

    def __init__(self, text: str, tokens: list[tuple[str, str]], fields: dict[str, Any]) -> None:
        self.text = text
        self.tokens = tokens
        self.fields = fields
        self.index = 0
        self.count = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, token: tuple[str, str]) -> bool:
        if self.peek() == token:
            self.index += 1
            return True
        return False

    def expression(self, depth: int) -> list[tuple[Comparison, ...]]:
        """`term {AND term}`: the groups that must all hold."""
        groups = self.term(depth)
        while self.take(_AND):
            groups += self.term(depth)
        return groups

    def term(self, depth: int) -> list[tuple[Comparison, ...]]:
        """`factor {OR factor}`: OR binds tighter than AND (AIP-160), so this is one group."""
        factors = [self.factor(depth)]
        while self.take(_OR):
            factors.append(self.factor(depth))
        if len(factors) == 1:
            return factors[0]
        if any(len(groups) != 1 for groups in factors):
            raise InvalidArgument(
                f"OR joins comparisons or parenthesized ORs, not a parenthesized AND, in filter {self.text!r}",
                field="filter",
            )
        return [tuple(c for groups in factors for c in groups[0])]

    def factor(self, depth: int) -> list[tuple[Comparison, ...]]:
        """`comparison | ( expression )`."""
        if self.take(_OPEN):
            if depth >= MAX_NESTING:
                raise InvalidArgument(f"parentheses nested more than {MAX_NESTING} deep in a filter",
                                      field="filter")
            groups = self.expression(depth + 1)
            if not self.take(_CLOSE):
                found = self.peek()
                raise InvalidArgument(
                    f"missing `)` in filter {self.text!r}" + (f" before {found[1]!r}" if found else ""),
                    field="filter",
                )
            return groups
        return [(self.comparison(),)]

    def comparison(self) -> Comparison:
        if self.index + 3 > len(self.tokens):
            raise InvalidArgument(f"incomplete comparison in filter {self.text!r}", field="filter")
        (kind_f, name), (kind_o, op), (kind_v, raw) = self.tokens[self.index : self.index + 3]
        if kind_f != "word" or name in _KEYWORDS or kind_o != "op" or kind_v not in ("word", "string"):
            raise InvalidArgument(
                f"expected `field OP value` in filter {self.text!r}, e.g. state = RUNNING", field="filter"
            )
        if name not in self.fields:
            known = ", ".join(sorted(self.fields))
            raise InvalidArgument(f"unknown filter field {name!r}; known: {known}", field="filter")
        self.count += 1
        if self.count > MAX_COMPARISONS:
            raise InvalidArgument(f"at most {MAX_COMPARISONS} comparisons in a filter", field="filter")
        self.index += 3
        return Comparison(name, op, convert_value(name, raw, self.fields[name]))


def parse_filter(text: str, fields: dict[str, Any]) -> Filter:
    """Parse `text` into a filter over `fields` (name -> int, str, datetime, or an enum
    converter callable). Raises INVALID_ARGUMENT naming what is wrong.

    Grammar (AIP-160's, without NOT and functions; OR binds tighter than AND):
    `expression = term {AND term}`, `term = factor {OR factor}`,
    `factor = field OP value | ( expression )`. A parenthesized AND may stand as a term of its
    own but may not be joined by OR: the result is always groups of ORs joined by AND."""
    if not text.strip():
        return Filter()
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidArgument(f"the filter is {len(text)} characters long; at most {MAX_FILTER_LENGTH}",
                              field="filter")
    if "\x00" in text:
        raise InvalidArgument("the filter contains a NUL character", field="filter")
    reader = _Reader(text, _tokens(text), fields)
    groups = reader.expression(0)
    found = reader.peek()
    if found is not None:
        if found == _CLOSE:
            raise InvalidArgument(f"a `)` with no `(` in filter {text!r}", field="filter")
        raise InvalidArgument(f"expected AND or OR between comparisons, found {found[1]!r}", field="filter")
    return Filter(tuple(groups))


def convert_value(name: str, raw: str, kind: Any) -> Any:
    """`raw`, a filter's value text, as field `name` of `kind` holds it; INVALID_ARGUMENT naming
    `filter` if it cannot be."""
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
