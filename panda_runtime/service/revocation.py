"""The revocation list: which subjects, clients and sign-ins an issuer has revoked, and since when.

The mesh's identity service publishes it over HTTP beside its JWKS (its discovery document
names it as `panda_revocation_list_uri`), and the token check every service runs keeps a copy
fresh (`RevocationFeed`, refetched every PANDA_AUTH_REVOCATION_REFRESH_SECONDS). A token whose
`sub` or `client_id` is on the list, issued (`iat`) at or before the time it was revoked, is
refused; a token issued later (the user enabled again, a new robot of the same name) is not. A
token whose sign-in (`sid`) is on the list is refused whenever it was issued: a sign-in, once
revoked, issues nothing more.
An issuer whose discovery document names no list (an external provider) is not checked.

The document (JSON):

    {"issuer": "https://iam.example.org",
     "subjects": [{"sub": "alice", "revoked_at": 1767225600.25}],
     "clients": [{"client_id": "site1-pilot", "revoked_at": 1767225601.5}],
     "sessions": [{"sid": "9f0c...", "revoked_at": 1767225602.0}]}

`sessions` is optional (a list published before it was added has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

__all__ = [
    "DISCOVERY_KEY", "EMPTY", "RevocationFeed", "RevocationList", "revocation_document",
]

log = logging.getLogger("panda.auth")

# The discovery document's key for the list's URL.
DISCOVERY_KEY = "panda_revocation_list_uri"
# A list holds at most this many entries of each kind; a larger one is refused as malformed.
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class RevocationList:
    """Revoked subjects, clients and sign-ins, each with the Unix time it was revoked."""

    subjects: Mapping[str, float] = field(default_factory=dict)
    clients: Mapping[str, float] = field(default_factory=dict)
    sessions: Mapping[str, float] = field(default_factory=dict)

    def refusal(self, subject: str, client_id: str, issued_at: float, session: str = "") -> str | None:
        """Why a token of `subject` through `client_id`, issued at `issued_at` from the sign-in
        `session`, is refused; None when nothing on the list covers it."""
        if session and session in self.sessions:
            when = datetime.fromtimestamp(self.sessions[session], UTC).isoformat(timespec="seconds")
            return f"token refused: its sign-in was revoked at {when}: sign in again"
        for what, name, revoked_at in (("user", subject, self.subjects.get(subject)),
                                       ("client", client_id, self.clients.get(client_id) if client_id else None)):
            if revoked_at is not None and issued_at <= revoked_at:
                when = datetime.fromtimestamp(revoked_at, UTC).isoformat(timespec="seconds")
                return (f"token refused: {what} {name} was disabled or deleted at {when}, after this token "
                        "was issued")
        return None

    @classmethod
    def from_document(cls, document: Any, issuer: str) -> RevocationList:
        """The list a document states; ValueError when it is not one, or is another issuer's."""
        if not isinstance(document, dict):
            raise ValueError("the revocation list is not a JSON object")
        if str(document.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise ValueError(f"the revocation list names issuer {document.get('issuer')!r}")
        return cls(subjects=_entries(document, "subjects", "sub"), clients=_entries(document, "clients", "client_id"),
                   sessions=_entries(document, "sessions", "sid"))


EMPTY = RevocationList()


def _entries(document: dict[str, Any], kind: str, key: str) -> dict[str, float]:
    entries = document.get(kind, [])
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        raise ValueError(f"the revocation list's {kind!r} is not a list of at most {MAX_ENTRIES} entries")
    found: dict[str, float] = {}
    for entry in entries:
        name = entry.get(key) if isinstance(entry, dict) else None
        revoked_at = entry.get("revoked_at") if isinstance(entry, dict) else None
        if not isinstance(name, str) or isinstance(revoked_at, bool) or not isinstance(revoked_at, int | float) \
                or not math.isfinite(revoked_at):
            raise ValueError(f"malformed entry in the revocation list's {kind!r}: {str(entry)[:200]}")
        found[name] = max(float(revoked_at), found.get(name, -math.inf))
    return found


def revocation_document(issuer: str, subjects: Mapping[str, float], clients: Mapping[str, float],
                        sessions: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The published form of a list (what `RevocationList.from_document` reads)."""
    return {
        "issuer": issuer,
        "subjects": [{"sub": name, "revoked_at": at} for name, at in sorted(subjects.items())],
        "clients": [{"client_id": name, "revoked_at": at} for name, at in sorted(clients.items())],
        "sessions": [{"sid": name, "revoked_at": at} for name, at in sorted((sessions or {}).items())],
    }


class RevocationFeed:
    """One issuer's list, kept fresh: fetched before the first token of the issuer is accepted
    (a failure then refuses the token, as missing keys do), then again every `refresh_seconds`
    by a task of its own. A failed refetch keeps the list in force and is logged; the next one
    tries again."""

    def __init__(self, issuer: str, url: str, http: httpx.AsyncClient, refresh_seconds: float) -> None:
        self.issuer = issuer
        self.url = url
        self._http = http
        self._refresh_seconds = refresh_seconds
        self._list: RevocationList | None = None
        self._last_attempt = -math.inf
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def current(self) -> RevocationList | None:
        """The list in force; None while none could be fetched yet."""
        if self._list is None:
            async with self._lock:
                # One attempt a second at most while the issuer does not answer.
                if self._list is None and time.monotonic() - self._last_attempt >= 1.0:
                    await self._fetch()
        if self._list is not None and self._task is None:
            self._task = asyncio.create_task(self._keep_fresh())
        return self._list

    async def _keep_fresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self._fetch()
            except Exception:  # the feed must outlive any one bad answer
                log.exception("refreshing the revocation list of issuer %s failed", self.issuer)

    async def _fetch(self) -> None:
        self._last_attempt = time.monotonic()
        try:
            response = await self._http.get(self.url, headers={"Cache-Control": "no-cache"})
            response.raise_for_status()
            fetched = RevocationList.from_document(response.json(), self.issuer)
        except (httpx.HTTPError, ValueError) as error:
            log.warning("cannot fetch the revocation list of issuer %s: %s", self.issuer, error)
            return
        if self._list is None or fetched != self._list:
            log.info("issuer %s revokes %d subject(s), %d client(s) and %d sign-in(s)", self.issuer,
                     len(fetched.subjects), len(fetched.clients), len(fetched.sessions))
        self._list = fetched

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
