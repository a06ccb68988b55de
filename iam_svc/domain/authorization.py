"""The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636): what an authorization
request must carry, how long a code lives, and what presenting a code at the token endpoint
comes to. No I/O.

A code is bound to its client, the exact redirect URI it was sent to, the PKCE challenge (S256
only, required of every client), the person who signed in, and the scope and nonce asked for.
It lives CODE_SECONDS and is good for one exchange: a code presented again is refused, and the
sign-in it started (its refresh tokens, and its access tokens through the revocation list) is
revoked, since either its client or a thief has used it already (RFC 6749 §4.1.2)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from iam_svc.domain.oauth import OAuthError, invalid_grant, invalid_request

__all__ = [
    "CODE_CHALLENGE_METHOD", "CODE_SECONDS", "ISSUED", "MAX_NONCE_LENGTH", "MAX_STATE_LENGTH", "USED",
    "AuthorizationCode", "Redemption", "check_authorization_extras", "check_code_challenge", "redemption",
    "refusal",
]

# Short: the browser brings the code to the client at once, and the client exchanges it at once.
CODE_SECONDS = 60
# RFC 7636 §4.2: S256 only; "plain" would hand the verifier to whoever sees the request.
CODE_CHALLENGE_METHOD = "S256"
# BASE64URL(SHA-256(verifier)): 43 characters of the URL-safe alphabet, no padding.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_STATE_LENGTH = 1024
MAX_NONCE_LENGTH = 512

ISSUED = "issued"
USED = "used"


@dataclass(frozen=True, slots=True)
class AuthorizationCode:
    """A code as stored (the code itself only as its digest, which this does not carry)."""

    client_id: str
    redirect_uri: str
    user_name: str
    scope: str
    nonce: str
    code_challenge: str
    code_challenge_method: str
    # The sign-in the code starts: its refresh tokens' family and its tokens' `sid`.
    family: str
    # ISSUED → USED.
    state: str
    auth_time: datetime
    expire_time: datetime


class Redemption(Enum):
    """What presenting a code at the token endpoint comes to."""

    # Exchanged now: its tokens are issued (once the PKCE verifier matches).
    REDEEMED = "redeemed"
    UNKNOWN = "unknown"
    WRONG_CLIENT = "wrong_client"
    EXPIRED = "expired"
    # Exchanged before: refused, and the sign-in it started is revoked.
    REUSED = "reused"


def check_code_challenge(challenge: str | None, method: str | None) -> None:
    """PKCE is required of every client, S256 only (invalid_request otherwise)."""
    if not challenge:
        raise invalid_request("code_challenge is required (PKCE, RFC 7636, with code_challenge_method=S256)")
    if method != CODE_CHALLENGE_METHOD:
        raise invalid_request(f"code_challenge_method must be {CODE_CHALLENGE_METHOD} (PKCE; plain is not offered)")
    if not _S256_CHALLENGE.fullmatch(challenge):
        raise invalid_request("code_challenge is not an S256 challenge (43 characters of base64url)")


def check_authorization_extras(state: str | None, nonce: str | None) -> None:
    """The client's state and nonce come back as they were sent: of bounded length."""
    if state is not None and len(state) > MAX_STATE_LENGTH:
        raise invalid_request(f"state is longer than {MAX_STATE_LENGTH} characters")
    if nonce is not None and len(nonce) > MAX_NONCE_LENGTH:
        raise invalid_request(f"nonce is longer than {MAX_NONCE_LENGTH} characters")


def redemption(code: AuthorizationCode | None, client_id: str, now: datetime) -> Redemption:
    """What presenting `code` for `client_id` now comes to. A code of another client tells that
    client nothing about it (UNKNOWN to it, and the code stays as it was)."""
    if code is None:
        return Redemption.UNKNOWN
    if code.client_id != client_id:
        return Redemption.WRONG_CLIENT
    if code.state == USED:
        return Redemption.REUSED
    if code.expire_time <= now:
        return Redemption.EXPIRED
    return Redemption.REDEEMED


_REFUSALS = {
    Redemption.UNKNOWN: "the code is not valid: sign in again",
    Redemption.WRONG_CLIENT: "the code is not valid: sign in again",
    Redemption.EXPIRED: "the code has expired: sign in again",
    Redemption.REUSED: "the code was already used, so every token issued from it is now revoked: sign in again",
}


def refusal(outcome: Redemption) -> OAuthError:
    """The token endpoint's answer to a code that gets no tokens."""
    return invalid_grant(_REFUSALS[outcome])
