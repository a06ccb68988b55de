"""Idempotency keys (AIP-155) of the create methods: a `request_id` belongs to the caller who
sent it. The same caller repeating a key with the same request gets the first call's result;
with another request, ALREADY_EXISTS; another caller's key is simply another key. A key is
stored with the caller and a digest of the request it came with."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from panda_runtime.service.errors import AlreadyExists

__all__ = ["check_replay", "lock_key", "request_digest"]


def request_digest(request: Message, *resolved: str) -> str:
    """A digest of what a request asks for: `request` as the service reads it (its request_id,
    and the fields it resolves, left out) and what it resolved them to (the owner and VO it
    submits for), so that two requests that mean the same have the same digest."""
    digest = hashlib.sha256(request.SerializeToString(deterministic=True))
    for value in resolved:
        digest.update(b"\x00" + value.encode())
    return digest.hexdigest()[:32]


def check_replay(stored_digest: str | None, digest: str, request_id: str) -> None:
    """A key seen before from this caller: the same request is a replay (its first result is
    the answer); another request is ALREADY_EXISTS. A key stored without a digest (before
    digests were kept) counts as the same request."""
    if stored_digest and stored_digest != digest:
        raise AlreadyExists(f"request_id {request_id!r} was already used by you for a different request: "
                            "use a new request_id for a new request")


def lock_key(caller: str, request_id: str) -> int:
    """A signed 64-bit number naming (caller, key), for a transaction-scoped advisory lock, so
    that two calls with one key are made one after the other."""
    return int.from_bytes(hashlib.sha256(f"{caller}\n{request_id}".encode()).digest()[:8], "big", signed=True)
