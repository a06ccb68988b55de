"""Access and ID tokens: the scope a grant gets, their claims (the WLCG token profile, plus
`panda.queues` for pilots), their signature and its check, and what userinfo says of the
subject. No I/O: who the subject is comes from the caller."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import jwt

from iam_svc.domain.accounts import Client, User
from iam_svc.domain.keys import ALGORITHM, SigningKey, load_private_key
from iam_svc.domain.oauth import OAuthError, invalid_grant
from panda_runtime.service.principals import GROUPS_CLAIM, QUEUES_CLAIM, SESSION_CLAIM

__all__ = [
    "CLAIMS_SUPPORTED",
    "DEFAULT_ROBOT_SCOPE",
    "DEFAULT_USER_SCOPE",
    "OFFLINE_ACCESS",
    "OPENID",
    "SUPPORTED_SCOPES",
    "ScopeError",
    "Subject",
    "TokenResponse",
    "access_token_claims",
    "grant_scope",
    "id_token_claims",
    "parse_scope",
    "person_info",
    "person_subject",
    "robot_info",
    "robot_subject",
    "sign",
    "speaks_for_robot",
    "token_response",
    "verify_access_token",
    "wants_id_token",
    "wants_refresh_token",
]

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
    "email", "wlcg.ver", GROUPS_CLAIM, QUEUES_CLAIM, SESSION_CLAIM, "nonce", "auth_time",
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


def grant_scope(requested: str | None, default: str, allowed: str | None = None) -> str:
    """parse_scope, refusing as the token endpoint does (invalid_scope)."""
    try:
        return parse_scope(requested, default, allowed)
    except ScopeError as error:
        raise OAuthError("invalid_scope", str(error)) from error


def wants_refresh_token(scope: str) -> bool:
    """A person's sign-in brings a refresh token only with offline_access."""
    return OFFLINE_ACCESS in scope.split()


def wants_id_token(scope: str) -> bool:
    """An ID token only for an OpenID Connect sign-in."""
    return OPENID in scope.split()


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
    # A person's sign-in (its refresh tokens' family): the `sid` of every token issued from it,
    # by which the revocation list can end them together.
    session: str = ""


def robot_subject(client: Client) -> Subject:
    """A client's own token (client_credentials): it speaks for the client, with its groups and queues."""
    return Subject(sub=client.client_id, client_id=client.client_id, groups=client.groups, robot=True,
                   queues=client.queues)


def person_subject(user_name: str, user: User | None, client_id: str, session: str = "") -> Subject:
    """A person's token through a client, from the account as it is now: a deleted or disabled
    account gets none. `session` names the sign-in it belongs to."""
    if user is None or not user.enabled:
        raise invalid_grant(f"user {user_name} no longer exists or is disabled")
    return Subject(sub=user.name, client_id=client_id, groups=user.groups, robot=False,
                   display_name=user.display_name, email=user.email, session=session)


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
    if subject.session:
        claims[SESSION_CLAIM] = subject.session
    if not subject.robot:
        if subject.display_name and "profile" in scope.split():
            claims["name"] = subject.display_name
        if subject.email and "email" in scope.split():
            claims["email"] = subject.email
    return claims


def id_token_claims(
    subject: Subject, *, issuer: str, lifetime_seconds: int, now: float, scope: str, nonce: str = "",
    auth_time: float | None = None,
) -> dict[str, Any]:
    """OpenID Connect's ID token: for the client (aud = its id), about the person; the client's
    `nonce` echoed, and when the person signed in (`auth_time`; now, unless told)."""
    issued = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject.sub,
        "aud": subject.client_id,
        "azp": subject.client_id,
        "exp": issued + lifetime_seconds,
        "iat": issued,
        "auth_time": int(auth_time) if auth_time is not None else issued,
        "preferred_username": subject.sub,
        "wlcg.ver": WLCG_VERSION,
    }
    if nonce:
        claims["nonce"] = nonce
    if subject.session:
        claims[SESSION_CLAIM] = subject.session
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


class TokenResponse(TypedDict):
    """RFC 6749 §5.1: a successful token response."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: NotRequired[str]
    id_token: NotRequired[str]


def token_response(
    access_token: str, *, expires_in: int, scope: str, refresh_token: str = "", id_token: str = ""
) -> TokenResponse:
    """RFC 6749 §5.1."""
    response: TokenResponse = {
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


def verify_access_token(
    token: str, published: Sequence[SigningKey], *, audience: str, issuer: str, leeway_seconds: int
) -> dict[str, Any]:
    """The claims of one of the provider's own access tokens, signed by one of its `published`
    keys; OAuthError invalid_token otherwise."""
    def refused(why: str) -> OAuthError:
        return OAuthError("invalid_token", why, 401)

    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError as error:
        raise refused(f"malformed token: {error}") from error
    key = next((k for k in published if k.kid == kid), None)
    if key is None:
        raise refused("the token is not signed by a key of this provider")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, load_private_key(key.private_key_pem).public_key(), algorithms=[ALGORITHM],
            audience=audience, issuer=issuer, leeway=leeway_seconds,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise refused("the token has expired") from error
    except jwt.PyJWTError as error:
        raise refused(f"the token is not valid: {error}") from error
    return claims


def speaks_for_robot(claims: dict[str, Any]) -> bool:
    """A robot's token names the client itself as its subject; a person's names the person."""
    return str(claims["sub"]) == str(claims.get("client_id", ""))


def robot_info(client_id: str, client: Client | None) -> dict[str, Any]:
    """OpenID Connect UserInfo of a robot, from the client as it is now (not as the token froze it)."""
    if client is None or not client.enabled:
        raise OAuthError("invalid_token", f"client {client_id} no longer exists or is disabled", 401)
    info: dict[str, Any] = {"sub": client_id, "preferred_username": client_id, GROUPS_CLAIM: list(client.groups)}
    if client.queues:
        info[QUEUES_CLAIM] = list(client.queues)
    return info


def person_info(user_name: str, user: User | None) -> dict[str, Any]:
    """OpenID Connect UserInfo of a person, from the account as it is now."""
    if user is None or not user.enabled:
        raise OAuthError("invalid_token", f"user {user_name} no longer exists or is disabled", 401)
    return {"sub": user_name, "preferred_username": user_name, "name": user.display_name, "email": user.email,
            GROUPS_CLAIM: list(user.groups)}
