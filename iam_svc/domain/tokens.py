"""Access and ID tokens: their claims (the WLCG token profile, plus `panda.queues` for pilots)
and their signature. No I/O: who the subject is comes from the caller."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from iam_svc.domain.keys import ALGORITHM, load_private_key
from panda_runtime.service.principals import GROUPS_CLAIM, QUEUES_CLAIM

WLCG_VERSION = "1.0"

OPENID = "openid"
OFFLINE_ACCESS = "offline_access"
SUPPORTED_SCOPES = ("openid", "profile", "email", "offline_access", "wlcg", "wlcg.groups")
# What a person's sign-in gets when the client names no scope; offline_access brings a
# refresh token.
DEFAULT_USER_SCOPE = "openid profile email offline_access wlcg.groups"
DEFAULT_ROBOT_SCOPE = "wlcg wlcg.groups"

CLAIMS_SUPPORTED = (
    "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "scope", "client_id", "name", "preferred_username",
    "email", "wlcg.ver", GROUPS_CLAIM, QUEUES_CLAIM,
)


class ScopeError(ValueError):
    """A requested scope the provider does not offer (OAuth error invalid_scope)."""


def parse_scope(requested: str | None, default: str, allowed: str | None = None) -> str:
    """The granted scope string: the request's (each one offered, and within `allowed` when
    given, e.g. a refresh may narrow its grant but not widen it), else `default`."""
    if requested is None or not requested.strip():
        return default
    names = list(dict.fromkeys(requested.split()))
    unknown = [n for n in names if n not in SUPPORTED_SCOPES]
    if unknown:
        raise ScopeError(f"unknown scope {' '.join(unknown)} (offered: {' '.join(SUPPORTED_SCOPES)})")
    if allowed is not None:
        beyond = [n for n in names if n not in allowed.split()]
        if beyond:
            raise ScopeError(f"scope {' '.join(beyond)} was not granted originally")
    return " ".join(names)


@dataclass(frozen=True)
class Subject:
    """Who a token speaks for: a person (sub = user name) or a robot (sub = client id)."""

    sub: str
    client_id: str
    groups: Sequence[str]
    robot: bool
    display_name: str = ""
    email: str = ""
    queues: Sequence[str] = field(default_factory=tuple)


def access_token_claims(
    subject: Subject, *, issuer: str, audience: str, scope: str, lifetime_seconds: int, now: float
) -> dict[str, Any]:
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject.sub,
        "aud": audience,
        "exp": issued + lifetime_seconds,
        "iat": issued,
        "nbf": issued,
        "jti": secrets.token_urlsafe(16),
        "scope": scope,
        "client_id": subject.client_id,
        "preferred_username": subject.sub,
        "wlcg.ver": WLCG_VERSION,
        # Always present: every service decides what a caller may do from its groups.
        GROUPS_CLAIM: list(subject.groups),
    }
    if subject.robot and subject.queues:
        claims[QUEUES_CLAIM] = list(subject.queues)
    if not subject.robot:
        if subject.display_name and "profile" in scope.split():
            claims["name"] = subject.display_name
        if subject.email and "email" in scope.split():
            claims["email"] = subject.email
    return claims


def id_token_claims(
    subject: Subject, *, issuer: str, lifetime_seconds: int, now: float, scope: str
) -> dict[str, Any]:
    """OpenID Connect's ID token: for the client (aud = its id), about the person."""
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject.sub,
        "aud": subject.client_id,
        "azp": subject.client_id,
        "exp": issued + lifetime_seconds,
        "iat": issued,
        "auth_time": issued,
        "preferred_username": subject.sub,
        "wlcg.ver": WLCG_VERSION,
    }
    if "profile" in scope.split() and subject.display_name:
        claims["name"] = subject.display_name
    if "email" in scope.split() and subject.email:
        claims["email"] = subject.email
    if "wlcg.groups" in scope.split():
        claims[GROUPS_CLAIM] = list(subject.groups)
    return claims


def sign(claims: dict[str, Any], *, kid: str, private_key_pem: str, token_type: str = "at+jwt") -> str:
    """A compact JWS. Access tokens are typed "at+jwt" (RFC 9068), ID tokens plain "JWT"."""
    return jwt.encode(
        claims, load_private_key(private_key_pem), algorithm=ALGORITHM, headers={"kid": kid, "typ": token_type}
    )


def token_response(
    access_token: str, *, expires_in: int, scope: str, refresh_token: str = "", id_token: str = ""
) -> dict[str, Any]:
    """RFC 6749 §5.1."""
    response: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if refresh_token:
        response["refresh_token"] = refresh_token
    if id_token:
        response["id_token"] = id_token
    return response
