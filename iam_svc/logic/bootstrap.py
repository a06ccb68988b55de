"""Plain functions other parts of the mesh call in-process on a migrated database: the default
groups and the command line's client, users and robots for `panda up` and the tests, a
signed-in user's tokens without a browser, and the first signing key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from iam_svc.domain import codes, oauth, tokens
from iam_svc.domain.keys import generate_signing_key
from iam_svc.domain.names import (
    check_client_id,
    check_email,
    check_group_paths,
    check_queue_names,
    check_user_name,
    default_groups,
)
from iam_svc.domain.passwords import check_password, hash_password
from iam_svc.logic.provider import Provider
from iam_svc.settings import IamSettings
from iam_svc.store.flow_store import FlowStore
from iam_svc.store.identity_store import IdentityStore
from iam_svc.store.key_store import KeyStore

# The command line's client: public (it cannot keep a secret), signs people in.
CLI_CLIENT_ID = "panda-cli"


def provider_for(engine: Engine, settings: IamSettings | None = None) -> Provider:
    return Provider(settings or IamSettings(), IdentityStore(engine), KeyStore(engine), FlowStore(engine))


def ensure_signing_key(engine: Engine) -> str:
    """Makes the first signing key if there is none; returns the active key's kid."""
    return str(KeyStore(engine).ensure_active_key(generate_signing_key)["kid"])


def ensure_defaults(engine: Engine) -> None:
    """What a new installation needs: the groups of the default VO (one per role), the public
    command-line client, and a signing key."""
    identities = IdentityStore(engine)
    identities.ensure_groups(default_groups())
    if identities.find_client(CLI_CLIENT_ID) is None:
        identities.upsert_client(
            CLI_CLIENT_ID, description="PanDA mesh command line (panda login)", public=True, secret_hash="",
            grant_types=list(oauth.PUBLIC_DEFAULT_GRANTS), groups=[], queues=[], enabled=True,
        )
    ensure_signing_key(engine)


def ensure_user(
    engine: Engine, name: str, *, groups: list[str], password: str | None = None, email: str = ""
) -> None:
    """Creates the user or brings it to this state: exactly these groups (made if missing),
    the password when one is given, the e-mail when one is given; enabled."""
    name = check_user_name(name)
    paths = check_group_paths(groups)
    email = check_email(email)
    password_hash = hash_password(check_password(password)) if password is not None else None
    identities = IdentityStore(engine)
    if identities.find_user(name) is None:
        identities.create_user(name, display_name=name, email=email, password_hash=password_hash or "",
                               enabled=True, group_paths=paths, create_missing_groups=True)
        return
    changes: dict[str, Any] = {"enabled": True}
    if password_hash is not None:
        changes["password_hash"] = password_hash
    if email:
        changes["email"] = email
    identities.update_user(name, changes)
    identities.set_memberships(name, paths, create_missing_groups=True)


def ensure_client(
    engine: Engine, client_id: str, *, groups: list[str], queues: Sequence[str] = (), public: bool = False
) -> str | None:
    """Creates the client or brings it to this state (groups made if missing) and gives a
    confidential client a fresh secret, returned; None for a public client."""
    client_id = check_client_id(client_id)
    paths = check_group_paths(groups)
    identities = IdentityStore(engine)
    identities.ensure_groups(paths)
    secret = None if public else codes.new_client_secret()
    identities.upsert_client(
        client_id, public=public, secret_hash=codes.digest(secret) if secret else "",
        grant_types=list(oauth.PUBLIC_DEFAULT_GRANTS if public else oauth.CONFIDENTIAL_DEFAULT_GRANTS),
        groups=paths, queues=check_queue_names(queues), enabled=True,
    )
    return secret


def issue_user_tokens(
    engine: Engine, settings: IamSettings, name: str, client_id: str = CLI_CLIENT_ID
) -> dict[str, Any]:
    """An OAuth token response (access_token, refresh_token, id_token, expires_in, token_type,
    scope) for an existing user, as if they had signed in through `client_id`."""
    ensure_defaults(engine)
    return provider_for(engine, settings).issue_user_tokens(check_user_name(name), client_id,
                                                            tokens.DEFAULT_USER_SCOPE)
