"""Who is calling and what they may do, as plain types: roles, the principal a token or a
certificate gives, the scope of records it covers, and each service's access table. No I/O:
the token check that makes principals is `panda_runtime.service.auth`."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from panda_runtime.service.errors import PermissionDenied

__all__ = [
    "ADMIN", "ANONYMOUS", "ANONYMOUS_PRINCIPAL", "ANY_VO", "AUTHENTICATED", "EVERYTHING", "GROUPS_CLAIM", "HARVESTER",
    "NOBODY", "PILOT", "PRODUCTION", "QUEUES_CLAIM", "ROLES", "SERVICE", "SESSION_CLAIM", "USER", "AccessTable",
    "Principal", "Scope", "canonical_subject", "current_principal", "grants_from_groups", "principal_from_claims",
    "set_current_principal",
]

ANONYMOUS = "anonymous"

# Roles. A user acts on what it owns; production acts on anything of its VO; pilot speaks only
# DispatchService for its queues; harvester its workers and relays; service is a component of
# the mesh itself (JEDI) acting for users; admin manages queues and identities.
USER = "user"

PRODUCTION = "production"

PILOT = "pilot"

HARVESTER = "harvester"

SERVICE = "service"

ADMIN = "admin"

ROLES = frozenset({USER, PRODUCTION, PILOT, HARVESTER, SERVICE, ADMIN})

# In an access table: any caller with a valid identity, whatever its roles.
AUTHENTICATED = "authenticated"

GROUPS_CLAIM = "wlcg.groups"

# Claim listing the queues a pilot token may serve.
QUEUES_CLAIM = "panda.queues"

# Claim naming the sign-in a person's token was issued from (OpenID Connect's session id), by
# which an issuer's revocation list can end every token of one sign-in.
SESSION_CLAIM = "sid"

# Any VO: the grants of the anonymous principal when checking is switched off.
ANY_VO = "*"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the account name (owner of what it submits), where its identity comes from,
    and the (vo, role) grants its groups give."""

    subject: str
    issuer: str = ""
    grants: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    groups: tuple[str, ...] = ()
    # Pilots: the queues this identity may serve ("*" for any).
    queues: frozenset[str] = field(default_factory=frozenset)
    client_id: str = ""
    # Unix time the identity stops being valid; 0 for none.
    expires_at: float = 0.0
    # Unix time its token was issued (`iat`); 0 for none.
    issued_at: float = 0.0
    # The sign-in its token was issued from (`sid`); empty for none.
    session: str = ""

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(role for _, role in self.grants)

    @property
    def vos(self) -> frozenset[str]:
        return frozenset(vo for vo, _ in self.grants)

    def has_role(self, role: str, vo: str | None = None) -> bool:
        """Holds `role` (in `vo`, when one is named)."""
        return any(r == role and (vo is None or v in (vo, ANY_VO)) for v, r in self.grants)

    def primary_vo(self) -> str:
        """The VO a new task or job of this caller belongs to: its only one, else the first."""
        vos = sorted(v for v in self.vos if v != ANY_VO)
        return vos[0] if vos else ""

    def may_act_for(self, owner: str, vo: str) -> bool:
        """May act on a resource owned by `owner` in `vo`: its owner, production of that VO,
        a mesh service or an admin."""
        return self.scope().covers(owner, vo)

    def scope(self) -> Scope:
        """What this caller may see: everything (service, admin), else its own and, for
        production, everything of the VOs it holds that role in."""
        if self.has_role(SERVICE) or self.has_role(ADMIN):
            return Scope(everything=True)
        return Scope(owner=self.subject, vos=frozenset(v for v, r in self.grants if r == PRODUCTION))

    def submitting_as(self, owner: str, vo: str) -> tuple[str, str]:
        """Owner and VO of what this caller submits: itself and its VO, unless it names another
        owner and may submit for others (the service role, an admin, production in that VO)."""
        owner, vo = owner.strip(), vo.strip()
        broad = self.has_role(SERVICE) or self.has_role(ADMIN)
        if vo and not broad and vo not in self.vos:
            raise PermissionDenied(f"{self.subject} is not a member of VO {vo!r}")
        vo = vo or self.primary_vo()
        if owner and owner != self.subject:
            if not (broad or self.has_role(PRODUCTION, vo)):
                raise PermissionDenied(
                    f"{self.subject} may not submit for {owner}: that needs the service role or production "
                    f"in VO {vo or '(none)'}"
                )
            return owner, vo
        return self.subject, vo

    @property
    def served_queues(self) -> frozenset[str]:
        """The queues this identity may serve as a pilot ("*": any): a pilot token's, or any
        for the roles that speak for many pilots (harvester) or manage them (service, admin)."""
        if self.has_role(ADMIN) or self.has_role(SERVICE) or self.has_role(HARVESTER):
            return frozenset({"*"})
        return self.queues

    def may_serve_queue(self, queue: str) -> bool:
        served = self.served_queues
        return "*" in served or queue in served


@dataclass(frozen=True)
class Scope:
    """The records a caller may see: all, or those it owns plus those of `vos`."""

    everything: bool = False
    owner: str = ""
    vos: frozenset[str] = field(default_factory=frozenset)

    def covers(self, owner: str, vo: str) -> bool:
        return self.everything or owner == self.owner or vo in self.vos or ANY_VO in self.vos


EVERYTHING = Scope(everything=True)


def grants_from_groups(groups: Iterable[str]) -> frozenset[tuple[str, str]]:
    """WLCG groups to grants: `/vo` and `/vo/<anything>` make a VO member (user), except that
    `/vo/<role>` grants that role alone, so a robot in `/vo/pilot` is not also a user."""
    grants: set[tuple[str, str]] = set()
    for group in groups:
        parts = [p for p in str(group).split("/") if p]
        if not parts:
            continue
        vo = parts[0]
        if len(parts) >= 2 and parts[1] in ROLES:
            grants.add((vo, parts[1]))
        else:
            grants.add((vo, USER))
    return frozenset(grants)


ANONYMOUS_PRINCIPAL = Principal(subject=ANONYMOUS, grants=frozenset((ANY_VO, role) for role in ROLES),
                                queues=frozenset({"*"}))


def canonical_subject(subject: str) -> str:
    """A certificate subject in the grid's slash form, most significant part first, whether it
    is written that way (`/DC=org/DC=panda/CN=Alice`) or as RFC 2253 (`CN=Alice,DC=panda,DC=org`,
    as TLS libraries report it)."""
    subject = subject.strip()
    if subject.startswith("/"):
        parts = [p.strip() for p in subject.split("/") if p.strip()]
    else:
        parts = [p.strip() for p in subject.split(",") if p.strip()][::-1]
    return "/" + "/".join(parts)


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    groups = claims.get(GROUPS_CLAIM) or claims.get("groups") or []
    if isinstance(groups, str):
        groups = groups.split()
    queues = claims.get(QUEUES_CLAIM) or []
    if isinstance(queues, str):
        queues = queues.split()
    return Principal(
        subject=str(claims.get("preferred_username") or claims["sub"]),
        issuer=str(claims.get("iss", "")),
        grants=grants_from_groups(groups),
        groups=tuple(str(g) for g in groups),
        queues=frozenset(str(q) for q in queues),
        client_id=str(claims.get("client_id") or claims.get("azp") or ""),
        expires_at=float(claims.get("exp", 0)),
        issued_at=float(claims.get("iat", 0)),
        session=str(claims.get(SESSION_CLAIM) or ""),
    )


class AccessTable:
    """Which roles may call which RPC of one service. A method the table does not name is
    refused: a new RPC is closed until someone decides who may call it."""

    def __init__(self, rules: Mapping[str, Iterable[str]]) -> None:
        self._rules = {method: frozenset(roles) for method, roles in rules.items()}

    @property
    def methods(self) -> frozenset[str]:
        return frozenset(self._rules)

    def check(self, method: str, principal: Principal) -> None:
        allowed = self._rules.get(method)
        if allowed is None:
            raise PermissionDenied(f"{method} is not open to anyone")
        if AUTHENTICATED in allowed or allowed & principal.roles:
            return
        held = ", ".join(sorted(principal.roles)) or "none"
        raise PermissionDenied(
            f"{principal.subject} may not call {method.rsplit('/', 1)[-1]}: it needs one of the roles "
            f"{', '.join(sorted(allowed))} (holds: {held})"
        )

    def merged(self, other: Mapping[str, Iterable[str]]) -> AccessTable:
        return AccessTable({**self._rules, **{m: frozenset(r) for m, r in other.items()}})


# Outside an authenticated call nobody holds anything: a forgotten check fails closed.
NOBODY = Principal(subject="")


_current_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("current_principal", default=NOBODY)


def current_principal() -> Principal:
    """The caller of the RPC being served."""
    return _current_principal.get()


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _current_principal.set(principal)
