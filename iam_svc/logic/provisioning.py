"""What a new installation needs (the default VO's groups, the command line's and the web
monitor's clients, a signing key), and the people and robots `panda up`, the test clusters and
the benchmarks bring to this state in-process, with tokens for people as if they had signed in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from iam_svc.domain import accounts, codes, tokens
from iam_svc.domain.accounts import Person, Robot, UserChanges
from iam_svc.domain.names import (
    check_client_id,
    check_email,
    check_group_paths,
    check_queue_names,
    check_user_name,
    default_groups,
)
from iam_svc.domain.passwords import check_password, hash_password
from iam_svc.domain.tokens import TokenResponse
from iam_svc.logic.provider import Provider
from iam_svc.store.identity_store import IdentityStore
from panda_runtime.contracts import Violation
from panda_runtime.contracts.iam import check_redirect_uris
from panda_runtime.settings import MONITOR_CLIENT_ID

__all__ = ["CLI_CLIENT_ID", "MONITOR_CLIENT_ID", "Provisioned", "ensure_defaults", "ensure_monitor_client",
           "ensure_person", "ensure_robot", "issue_user_tokens", "monitor_redirect_uris", "provision"]

log = logging.getLogger("panda.iam")

# The command line's client: public (it cannot keep a secret), signs people in.
CLI_CLIENT_ID = "panda-cli"


@dataclass(frozen=True, slots=True)
class Provisioned:
    # Each robot's new secret, by client id.
    secrets: dict[str, str] = field(default_factory=dict)
    # The token response of each person signed in, by user name.
    tokens: dict[str, TokenResponse] = field(default_factory=dict)


def ensure_defaults(provider: Provider, monitor_redirects: Sequence[str] | None = None) -> None:
    """What a new installation needs: the groups of the default VO (one per role), the public
    command-line client, and a signing key; with `monitor_redirects`, the web monitor's client
    too, sending people back there (and only there)."""
    identities = provider.identities
    identities.ensure_groups(default_groups())
    if identities.find_client(CLI_CLIENT_ID) is None:
        identities.upsert_client(
            CLI_CLIENT_ID, description="PanDA mesh command line (panda login)", public=True, secret_hash="",
            grant_types=accounts.default_grant_types(public=True), group_paths=[], queues=[], enabled=True,
        )
    if monitor_redirects is not None:
        ensure_monitor_client(identities, monitor_redirects)
    provider.ensure_signing_key()


def monitor_redirect_uris(redirect_uri: str) -> list[str]:
    """The monitor's redirect URIs from the one the settings make (PANDA_GATEWAY_PUBLIC_URL,
    else the gateway's address): none, logged, when it is not one a client may have (plain http
    beyond the loopback), so that no sign-in is ever sent there."""
    try:
        return check_redirect_uris([redirect_uri], "PANDA_GATEWAY_PUBLIC_URL")
    except Violation as violation:
        log.error("the web monitor's sign-in is off: %s (set PANDA_GATEWAY_PUBLIC_URL to the gateway's https URL)",
                  violation.description)
        return []


def ensure_monitor_client(identities: IdentityStore, redirect_uris: Sequence[str]) -> None:
    """The web monitor's public client (authorization code with PKCE, refresh), sending people
    back to `redirect_uris` only: set anew at every start, so it follows the gateway's URL."""
    identities.upsert_client(
        MONITOR_CLIENT_ID, description="PanDA mesh web monitor (sign-in in the browser)", public=True,
        secret_hash="", grant_types=accounts.default_grant_types(public=True, redirects=True), group_paths=[],
        queues=[], enabled=True, redirect_uris=redirect_uris,
    )


def ensure_person(identities: IdentityStore, person: Person) -> None:
    """Creates the user or brings it to the state `person` asks for."""
    name = check_user_name(person.name)
    paths = check_group_paths(person.groups)
    email = check_email(person.email)
    password_hash = hash_password(check_password(person.password)) if person.password is not None else None
    if identities.find_user(name) is None:
        identities.create_user(name, display_name=name, email=email, password_hash=password_hash or "",
                               enabled=True, group_paths=paths, create_missing_groups=True)
        return
    identities.update_user(name, UserChanges(enabled=True, password_hash=password_hash, email=email or None))
    identities.set_memberships(name, paths, create_missing_groups=True)


def ensure_robot(identities: IdentityStore, robot: Robot) -> str:
    """Creates the confidential client or brings it to the state `robot` asks for (groups made if
    missing), with a fresh secret, returned."""
    client_id = check_client_id(robot.client_id)
    paths = check_group_paths(robot.groups)
    identities.ensure_groups(paths)
    secret = codes.new_client_secret()
    identities.upsert_client(
        client_id, public=False, secret_hash=codes.digest(secret),
        grant_types=accounts.default_grant_types(public=False), group_paths=paths,
        queues=check_queue_names(robot.queues), enabled=True,
    )
    return secret


def issue_user_tokens(provider: Provider, user_name: str, client_id: str = CLI_CLIENT_ID) -> TokenResponse:
    """An OAuth token response for an existing user, as if they had signed in through `client_id`."""
    ensure_defaults(provider)
    return provider.issue_user_tokens(check_user_name(user_name), client_id, tokens.DEFAULT_USER_SCOPE)


def provision(provider: Provider, *, people: Sequence[Person] = (), robots: Sequence[Robot] = (),
              sign_in: Sequence[str] = (), monitor_redirects: Sequence[str] | None = None) -> Provisioned:
    """The defaults (the monitor's client sending people to `monitor_redirects`), then `people`
    and `robots` as they ask; then tokens for the users named in `sign_in`, as if each had
    signed in with the command line."""
    ensure_defaults(provider, monitor_redirects)
    for person in people:
        ensure_person(provider.identities, person)
    provisioned = Provisioned()
    for robot in robots:
        provisioned.secrets[robot.client_id] = ensure_robot(provider.identities, robot)
    for name in sign_in:
        provisioned.tokens[name] = provider.issue_user_tokens(check_user_name(name), CLI_CLIENT_ID,
                                                              tokens.DEFAULT_USER_SCOPE)
    return provisioned
