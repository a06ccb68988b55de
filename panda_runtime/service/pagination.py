"""Page tokens and sizes for every List method (AIP-158): opaque to clients, bound to the
query that made them, so a token reused with another filter is refused. A token comes back
from the client: what it holds is checked as any other input before it reaches a query."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from panda_runtime.contracts.rules import INT64_MAX
from panda_runtime.service.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "MAX_TOKEN_LENGTH", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# A token holds a sorted page's last row's sort keys: at most 4 texts of at most 256 characters
# (4 UTF-8 bytes each), about 5,500 characters in base64; a longer token is not one of ours.
MAX_TOKEN_LENGTH = 8192
# A position's text value (a name a page ends at) is at most this long.
_MAX_POSITION_TEXT = 1024


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _query_key(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8", "replace")).hexdigest()[:16]


def encode_token(position: dict[str, Any], query: str) -> str:
    payload = json.dumps({"p": position, "q": _query_key(query)}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _not_ours() -> InvalidArgument:
    return InvalidArgument("page_token is not one this service issued", field="page_token")


def _valid_value(value: Any) -> bool:
    """What a position holds: ids (positive 64-bit integers) and names (short text, no NUL)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 <= value <= INT64_MAX
    return isinstance(value, str) and len(value) <= _MAX_POSITION_TEXT and "\x00" not in value


def decode_token(token: str, query: str, fields: Mapping[str, type] | None = None) -> dict[str, Any]:
    """The position a token names; {} for an empty token. Its values are 64-bit integers or
    short text; with `fields` (name -> int or str), only those names, each of its type."""
    if not token:
        return {}
    if len(token) > MAX_TOKEN_LENGTH:
        raise _not_ours()
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        position, key = payload["p"], payload["q"]
    except (ValueError, KeyError, TypeError, IndexError, RecursionError, binascii.Error) as error:
        raise _not_ours() from error
    if not isinstance(key, str) or not isinstance(position, dict):
        raise _not_ours()
    if key != _query_key(query):
        raise InvalidArgument("page_token was issued for another filter or order_by", field="page_token")
    for name, value in position.items():
        if not _valid_value(value):
            raise _not_ours()
        if fields is not None and not (name in fields and isinstance(value, fields[name])):
            raise _not_ours()
    return position
