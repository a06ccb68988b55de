"""Which identity changes revoke the tokens already issued, how long a revocation is kept, and
what the provider publishes of them for every service's token check (the logic puts it in the
shared format, panda_runtime.service.revocation). No I/O.

Disabling or deleting a user revokes the tokens issued to that user (by `sub`); deleting a
client revokes every token issued through it (by `client_id`): its own robot tokens and the
tokens of people who signed in with it. A token issued after the revocation (the user enabled
again, a client made anew under the same id) is not covered."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from iam_svc.domain.accounts import UserChanges, ends_sign_ins

__all__ = ["CLIENT", "SESSION", "SUBJECT", "Latest", "Revocation", "latest", "retention", "revokes_tokens"]

# What a revocation names: a token's subject, or the client it was issued through.
SUBJECT = "sub"
CLIENT = "client_id"
# ... or the sign-in it was issued from.
SESSION = "sid"

# Beyond the longest token lifetime, so clocks that differ a little never bring a token back.
RETENTION_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Revocation:
    kind: str
    name: str
    revoke_time: datetime


def revokes_tokens(changes: UserChanges) -> bool:
    """Disabling an account ends its tokens, as it ends its sign-ins."""
    return ends_sign_ins(changes)


def retention(longest_token_seconds: int) -> timedelta:
    """How long a revocation is published (and kept): until every token issued before it has
    expired. `longest_token_seconds` already holds the verifiers' leeway."""
    return timedelta(seconds=longest_token_seconds) + RETENTION_MARGIN


@dataclass(frozen=True, slots=True)
class Latest:
    """What is published: the latest revocation of each subject, client and sign-in, as Unix times."""

    subjects: dict[str, float]
    clients: dict[str, float]
    sessions: dict[str, float]


def latest(revocations: Iterable[Revocation]) -> Latest:
    found: dict[str, dict[str, float]] = {SUBJECT: {}, CLIENT: {}, SESSION: {}}
    for revocation in revocations:
        names = found.get(revocation.kind)
        if names is None:
            continue
        at = revocation.revoke_time.timestamp()
        names[revocation.name] = max(at, names.get(revocation.name, at))
    return Latest(subjects=found[SUBJECT], clients=found[CLIENT], sessions=found[SESSION])
