"""Pilot identities: the server issues each pilot its id (readable: the name the pilot suggests,
or its token's subject, and a random suffix) with a secret; a pilot that reconnects shows both
to resume that identity and the jobs sent to it, and only under the token subject it was issued
to. The stream's pilot id is then who may report on a job."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from panda_runtime.service.errors import PermissionDenied

__all__ = [
    "MAX_NODE", "MAX_PILOT_ID", "MAX_RESUME_SECRET", "Admission", "PilotClaim", "PilotIdentity", "PilotRefused",
    "new_identity", "readable_name", "resumes", "secret_digest",
]

# As long as the columns that hold them (pilots, jobs, pilot_commands).
MAX_PILOT_ID = 256
MAX_NODE = 256
MAX_RESUME_SECRET = 128
# The readable part of an issued id: room to spare under MAX_PILOT_ID for the suffix.
_MAX_NAME = 64
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class PilotClaim:
    """Who a stream's Hello says the pilot is: a suggested name (no secret) or an issued id and
    its secret; and who its token says it is."""

    pilot_id: str
    resume_secret: str
    subject: str
    queue: str
    node: str


@dataclass(frozen=True, slots=True)
class PilotIdentity:
    """A pilot identity as stored: the secret only as its digest."""

    pilot_id: str
    secret_digest: str
    subject: str
    queue: str
    node: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class Admission:
    """The identity a stream speaks as, and the secret the pilot resumes it with."""

    pilot_id: str
    resume_secret: str
    resumed: bool


def secret_digest(secret: str) -> str:
    # The secret is random and long: a fast hash is enough, and a Hello pays nothing for it.
    return hashlib.sha256(secret.encode()).hexdigest()


def readable_name(suggested: str, subject: str) -> str:
    """The readable part of a new pilot id: the suggested name (else the token's subject) with
    anything but letters, digits, '.', '_' and '-' replaced, at most 64 characters."""
    name = _NOT_IN_A_NAME.sub("-", suggested or subject)[:_MAX_NAME].strip("-.")
    return name or "pilot"


def new_identity(claim: PilotClaim, now: datetime) -> tuple[PilotIdentity, str]:
    """A new identity for the claim's pilot, and its secret (given to the pilot once, never stored)."""
    secret = secrets.token_urlsafe(32)
    pilot_id = f"{readable_name(claim.pilot_id, claim.subject)}-{secrets.token_hex(4)}"
    identity = PilotIdentity(pilot_id, secret_digest(secret), claim.subject, claim.queue, claim.node, now, now)
    return identity, secret


def resumes(claim: PilotClaim, identity: PilotIdentity | None) -> bool:
    """Whether the claim resumes `identity` (the one stored under the claimed id, if any) or gets
    a new one. A claim to an issued id holds only with its secret and under the subject it was
    issued to: PilotRefused (PERMISSION_DENIED) otherwise, saying no more than that."""
    if identity is None:
        if not claim.resume_secret:
            return False
        reason = "no such pilot identity"
    elif not claim.resume_secret:
        reason = "the id of an issued identity, without its resume secret"
    elif not hmac.compare_digest(identity.secret_digest, secret_digest(claim.resume_secret)):
        reason = "a wrong resume secret"
    elif identity.subject != claim.subject:
        reason = f"an identity issued to {identity.subject}"
    else:
        return True
    raise PilotRefused(
        f"pilot {claim.pilot_id}: this stream may not speak as that pilot (a reconnect needs the resume "
        "secret the pilot was issued, under the same token subject)",
        reason=reason,
    )


class PilotRefused(PermissionDenied):
    """PERMISSION_DENIED for a claim to a pilot identity; `reason` is for the server's log only."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
