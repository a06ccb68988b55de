"""The authentication seam: every RPC passes here. Until the identity service lands, calls are
taken as the anonymous principal; no check is pretended."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a subject and the roles its token grants."""

    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)


class Authenticator(Protocol):
    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        """Resolve the caller of `method` from the call's metadata, or raise ServiceError."""
        ...


class AnonymousAuthenticator:
    """No identity service configured: every caller is the anonymous principal."""

    def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> Principal:
        return Principal(subject=ANONYMOUS)


_ANONYMOUS_PRINCIPAL = Principal(subject=ANONYMOUS)
_current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "current_principal", default=_ANONYMOUS_PRINCIPAL
)


def current_principal() -> Principal:
    """The caller of the RPC being served."""
    return _current_principal.get()


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current_principal.set(principal)
