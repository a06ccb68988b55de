"""Page tokens and sizes for every List method (AIP-158): opaque to clients, bound to the
query that made them, so a token reused with another filter is refused."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from panda_runtime.service.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_token", "encode_token", "page_size"]

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", field="page_size")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _query_key(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def encode_token(position: dict[str, Any], query: str) -> str:
    payload = json.dumps({"p": position, "q": _query_key(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, query: str) -> dict[str, Any]:
    """The position a token names; {} for an empty token."""
    if not token:
        return {}
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        position, key = payload["p"], payload["q"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument("page_token is not one this service issued", field="page_token") from error
    if key != _query_key(query):
        raise InvalidArgument("page_token was issued for another filter", field="page_token")
    return position
