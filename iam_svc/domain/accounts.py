"""People, groups and clients as the provider knows them, and the rules about who they are:
how a client authenticates, which grants it may use, who may sign in, what provisioning asks for."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeGuard

from iam_svc.domain import codes, oauth
from iam_svc.domain.oauth import OAuthError, invalid_client
from iam_svc.domain.passwords import verify_password
from panda_runtime.service.errors import InvalidArgument

__all__ = [
    "Client",
    "Group",
    "Person",
    "Robot",
    "User",
    "UserChanges",
    "authenticate_client",
    "check_grant",
    "check_grant_types",
    "default_grant_types",
    "ends_sign_ins",
    "sign_in_name",
    "signs_in",
]


@dataclass(frozen=True, slots=True)
class User:
    name: str
    display_name: str
    email: str
    # argon2id hash; empty: no password sign-in.
    password_hash: str
    enabled: bool
    groups: tuple[str, ...]
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class Group:
    path: str
    description: str
    member_count: int
    create_time: datetime


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    description: str
    public: bool
    # SHA-256 of the secret (hex); empty for a public client.
    secret_hash: str
    grant_types: tuple[str, ...]
    # The groups and queues of the client's own (client_credentials) tokens.
    groups: tuple[str, ...]
    queues: tuple[str, ...]
    enabled: bool
    create_time: datetime
    update_time: datetime
    # Where the authorization endpoint may send a person back, matched exactly.
    redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class UserChanges:
    """What an update sets; None leaves a field as it is."""

    display_name: str | None = None
    email: str | None = None
    password_hash: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A user as provisioning wants it: exactly these groups (made if missing), the password
    when one is given, the e-mail when one is given; enabled."""

    name: str
    groups: Sequence[str]
    password: str | None = None
    email: str = ""


@dataclass(frozen=True, slots=True)
class Robot:
    """A confidential client as provisioning wants it: its groups and the queues it may serve."""

    client_id: str
    groups: Sequence[str]
    queues: Sequence[str] = field(default_factory=tuple)


# --- clients -------------------------------------------------------------------------------


def authenticate_client(client: Client | None, client_id: str, secret: str | None) -> Client:
    """The client, if it is who it says: a confidential client with its secret, a public one
    with none. Every failure reads the same, so nothing is learnt about which clients exist."""
    refused = invalid_client("client authentication failed (unknown client, wrong secret or no secret)")
    if client is None or not client.enabled:
        if secret is not None:
            hmac.compare_digest(codes.digest(secret), "0" * 64)  # keep the timing of a real check
        raise refused
    if client.public:
        if secret:
            raise invalid_client(f"client {client_id} is public: it authenticates without a secret")
        return client
    if not secret or not hmac.compare_digest(codes.digest(secret), client.secret_hash):
        raise refused
    return client


def check_grant(client: Client, grant_type: str) -> None:
    """A client uses only the grants it was given."""
    if grant_type not in client.grant_types:
        raise OAuthError("unauthorized_client", f"client {client.client_id} may not use the grant {grant_type}")


def default_grant_types(public: bool, redirects: bool = False) -> tuple[str, ...]:
    """A public client signs people in (through the browser when it has redirect URIs, else on
    a device); a confidential one gets tokens of its own."""
    if not public:
        return oauth.CONFIDENTIAL_DEFAULT_GRANTS
    return oauth.REDIRECT_DEFAULT_GRANTS if redirects else oauth.PUBLIC_DEFAULT_GRANTS


def check_grant_types(requested: Iterable[str], public: bool, field: str = "client.grant_types",
                      redirect_uris: Sequence[str] = (), redirect_field: str = "client.redirect_uris") -> list[str]:
    """The grants a new client gets: those asked for (short names allowed), or the defaults of
    its kind. A public client has no secret, so it cannot use client_credentials; the
    authorization code grant needs a redirect URI to send the code to."""
    names = list(requested)
    grants = list(default_grant_types(public, bool(redirect_uris))) if not names else _named_grants(names, field)
    if public and oauth.CLIENT_CREDENTIALS in grants:
        raise InvalidArgument("a public client has no secret, so it cannot use client_credentials", field=field)
    if oauth.AUTHORIZATION_CODE in grants and not redirect_uris:
        raise InvalidArgument("the authorization_code grant needs at least one redirect URI", field=redirect_field)
    return grants


def _named_grants(names: Sequence[str], field: str) -> list[str]:
    grants = []
    for name in names:
        grant = oauth.GRANT_TYPE_ALIASES.get(name.strip(), name.strip())
        if grant not in oauth.GRANT_TYPES:
            raise InvalidArgument(f"unknown grant type {name!r} (known: {', '.join(oauth.GRANT_TYPES)})",
                                  field=field)
        grants.append(grant)
    return list(dict.fromkeys(grants))


# --- people --------------------------------------------------------------------------------


def sign_in_name(typed: str) -> str:
    """The account a name typed on the sign-in page means: user names are lower case."""
    return typed.strip().lower()


def signs_in(user: User | None, password: str) -> TypeGuard[User]:
    """Whether this password opens this account: it is the account's, and the account is enabled.
    The password is checked even for an unknown user, so a wrong name takes as long."""
    password_hash = user.password_hash if user is not None else ""
    return verify_password(password_hash, password) and user is not None and user.enabled


def ends_sign_ins(changes: UserChanges) -> bool:
    """Disabling an account revokes its refresh tokens: no sign-in of it renews any more."""
    return changes.enabled is False
