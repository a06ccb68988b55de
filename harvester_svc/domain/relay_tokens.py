"""The relay's credentials for pilots on worker nodes with no way out: such a pilot cannot reach
the identity service, so harvester gives each worker it starts a token of its own, an HMAC of the
worker's id under harvester's relay key. The relay admits a token only for a live worker of its
own, and only as that worker's pilot."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["PREFIX", "relay_token", "worker_of"]

PREFIX = "relay"


def relay_token(key: bytes, worker_id: str) -> str:
    return f"{PREFIX}:{worker_id}:{_mac(key, worker_id)}"


def worker_of(key: bytes, token: str) -> str | None:
    """The worker whose token this is; None for anything else (another key, a forged id)."""
    prefix, _, rest = token.partition(":")
    worker_id, _, mac = rest.rpartition(":")
    if prefix != PREFIX or not worker_id or not hmac.compare_digest(mac, _mac(key, worker_id)):
        return None
    return worker_id


def _mac(key: bytes, worker_id: str) -> str:
    return hmac.new(key, worker_id.encode(), hashlib.sha256).hexdigest()
