"""Refresh tokens: rotation on every use, and what a token that comes back after it was spent
means. Every token descending from one sign-in shares a family; a spent (rotated) token presented
again revokes the whole family, since either its holder or a thief has the newer one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from iam_svc.domain.oauth import OAuthError, invalid_grant

__all__ = ["ACTIVE", "REVOKED", "ROTATED", "RefreshOutcome", "RefreshResult", "RefreshToken", "refusal",
           "rotation_outcome"]

ACTIVE = "active"
# Exchanged for a newer one.
ROTATED = "rotated"
REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class RefreshToken:
    """A refresh token as stored (the token itself only as its digest, which this does not carry)."""

    family: str
    client_id: str
    user_name: str
    scope: str
    state: str
    expire_time: datetime


class RefreshOutcome(Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REVOKED = "revoked"
    # An already rotated token came back: its whole family is now revoked.
    REUSED = "reused"
    WRONG_CLIENT = "wrong_client"


@dataclass(frozen=True, slots=True)
class RefreshResult:
    outcome: RefreshOutcome
    user_name: str = ""
    scope: str = ""
    family: str = ""


def rotation_outcome(token: RefreshToken | None, client_id: str, now: datetime) -> RefreshOutcome:
    """What presenting `token` for `client_id` comes to: ROTATED (a new token replaces it), or
    why not. REUSED asks the caller to revoke the token's family."""
    if token is None:
        return RefreshOutcome.UNKNOWN
    if token.client_id != client_id:
        return RefreshOutcome.WRONG_CLIENT
    if token.state == ROTATED:
        return RefreshOutcome.REUSED
    if token.state != ACTIVE:
        return RefreshOutcome.REVOKED
    if token.expire_time <= now:
        return RefreshOutcome.EXPIRED
    return RefreshOutcome.ROTATED


_REFUSALS = {
    RefreshOutcome.UNKNOWN: "the refresh token is not valid: sign in again",
    RefreshOutcome.WRONG_CLIENT: "the refresh token was issued to another client",
    RefreshOutcome.REUSED: "the refresh token was already used, so every token of this sign-in is now revoked: "
                           "sign in again",
    RefreshOutcome.REVOKED: "the refresh token was revoked: sign in again",
    RefreshOutcome.EXPIRED: "the refresh token has expired: sign in again",
}


def refusal(outcome: RefreshOutcome) -> OAuthError:
    """The token endpoint's answer to a refresh that got no new tokens."""
    return invalid_grant(_REFUSALS[outcome])
