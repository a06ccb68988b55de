"""Who is calling, and may they: the token check every service runs on every call.

A call carries `authorization: Bearer <JWT>`. The token's `iss` must be a trusted issuer; its
signature is checked with a key from that issuer's JWKS (found through its discovery document,
cached, refetched when a token names an unknown `kid`), with the algorithm the key itself
dictates, never the one the token's header asks for. `aud`, `exp`, `nbf` and `iat` are checked
with a small leeway. WLCG groups (`wlcg.groups`) become grants: `/vo` (or any subgroup) makes a
member of the VO ("user"), `/vo/<role>` grants that role in the VO.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from panda_runtime.service.errors import PermissionDenied, Unauthenticated

log = logging.getLogger("panda.auth")

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

    def may_serve_queue(self, queue: str) -> bool:
        if self.has_role(ADMIN) or self.has_role(SERVICE) or self.has_role(HARVESTER):
            return True
        return "*" in self.queues or queue in self.queues


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


class Authenticator(Protocol):
    async def authenticate(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], context: grpc.aio.ServicerContext | None
    ) -> Principal:
        """Resolve the caller of `method`, or raise Unauthenticated."""
        ...


class AnonymousAuthenticator:
    """Checking switched off (auth_mode "none"): every caller may do everything."""

    async def authenticate(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], context: grpc.aio.ServicerContext | None
    ) -> Principal:
        return ANONYMOUS_PRINCIPAL


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            raise Unauthenticated("the authorization header must be `Bearer <token>`")
    return None


# Algorithms a key may verify, by key type; the key's own `alg`, when it states one, narrows it.
_ALGORITHMS_BY_KTY = {"RSA": ("RS256", "RS384", "RS512", "PS256"), "EC": ("ES256", "ES384", "ES512")}


@dataclass
class _VerificationKey:
    key: Any
    algorithms: tuple[str, ...]


# However many unknown kids arrive, an issuer's keys are fetched at most this often, seconds.
_JWKS_FLOOR_SECONDS = 1.0


class _Issuer:
    """One trusted issuer: its JWKS, fetched through discovery and cached. A kid not seen before
    (a rotated key) refetches at once; the same unknown kid again only after `min_refresh`, and
    never more often than once a second, so made-up kids cannot hammer the issuer."""

    def __init__(self, url: str, http: httpx.AsyncClient, min_refresh: float, max_age: float) -> None:
        self.url = url.rstrip("/")
        self._http = http
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._keys: dict[str, _VerificationKey] = {}
        self._fetched_at = -_JWKS_FLOOR_SECONDS
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._lock = asyncio.Lock()

    def _should_fetch(self, kid: str) -> bool:
        now = time.monotonic()
        if now - self._fetched_at > self._max_age:
            return True
        if kid in self._keys or now - self._fetched_at < _JWKS_FLOOR_SECONDS:
            return False
        missed = self._misses.get(kid)
        return missed is None or now - missed >= self._min_refresh

    async def key(self, kid: str) -> _VerificationKey:
        if self._should_fetch(kid):
            async with self._lock:
                if self._should_fetch(kid):
                    await self._refresh()
                    if kid not in self._keys:
                        self._misses[kid] = time.monotonic()
                        if len(self._misses) > 1000:
                            self._misses.popitem(last=False)
        found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated(f"token signed with key {kid!r}, which issuer {self.url} does not publish")
        return found

    async def _refresh(self) -> None:
        try:
            discovery = await self._http.get(f"{self.url}/.well-known/openid-configuration")
            discovery.raise_for_status()
            document = discovery.json()
            if str(document.get("issuer", "")).rstrip("/") != self.url:
                raise ValueError(f"its discovery document names issuer {document.get('issuer')!r}")
            jwks = await self._http.get(document["jwks_uri"])
            jwks.raise_for_status()
            keys: dict[str, _VerificationKey] = {}
            for jwk in jwks.json().get("keys", []):
                parsed = _parse_jwk(jwk)
                if parsed is not None:
                    keys[jwk["kid"]] = parsed
        except (httpx.HTTPError, ValueError, KeyError) as error:
            self._fetched_at = time.monotonic()
            log.warning("cannot fetch the keys of issuer %s: %s", self.url, error)
            if not self._keys:
                raise Unauthenticated(f"cannot fetch the signing keys of issuer {self.url}: {error}") from error
            return
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("issuer %s publishes %d signing key(s)", self.url, len(keys))


def _parse_jwk(jwk: Mapping[str, Any]) -> _VerificationKey | None:
    kty, kid, use = jwk.get("kty"), jwk.get("kid"), jwk.get("use", "sig")
    if not kid or use != "sig" or kty not in _ALGORITHMS_BY_KTY:
        return None
    algorithms = _ALGORITHMS_BY_KTY[kty]
    if jwk.get("alg"):
        if jwk["alg"] not in algorithms:
            return None
        algorithms = (jwk["alg"],)
    key = RSAAlgorithm.from_jwk(dict(jwk)) if kty == "RSA" else ECAlgorithm.from_jwk(dict(jwk))
    return _VerificationKey(key=key, algorithms=algorithms)


class TokenAuthenticator:
    """Checks bearer tokens against trusted OIDC issuers (see the module's doc).

    `x509_users` maps a verified client certificate's subject to a principal, for the legacy
    mutual-TLS path; a bearer token, when present, always wins."""

    def __init__(
        self,
        issuers: Sequence[str],
        *,
        audience: str,
        leeway_seconds: int = 30,
        jwks_min_refresh_seconds: float = 10.0,
        jwks_max_age_seconds: float = 3600.0,
        cache_size: int = 10_000,
        x509_users: Mapping[str, Principal] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=5.0)
        self._issuers = {
            url.rstrip("/"): _Issuer(url, self._http, jwks_min_refresh_seconds, jwks_max_age_seconds)
            for url in issuers
        }
        self._audience = audience
        self._leeway = leeway_seconds
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._x509_users = dict(x509_users or {})

    @property
    def issuers(self) -> list[str]:
        return list(self._issuers)

    async def authenticate(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], context: grpc.aio.ServicerContext | None
    ) -> Principal:
        token = bearer_token(metadata)
        if token is None:
            principal = self._from_certificate(context)
            if principal is None:
                raise Unauthenticated(f"{method} needs a bearer token: sign in with `panda login`")
            return principal
        return await self.verify(token)

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > time.time() - self._leeway:
                self._cache.move_to_end(token)
                return cached
            del self._cache[token]
        principal = await self._verify(token)
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"malformed token: {error}") from error
        issuer_url = str(unverified.get("iss", "")).rstrip("/")
        issuer = self._issuers.get(issuer_url)
        if issuer is None:
            raise Unauthenticated(f"token issuer {unverified.get('iss')!r} is not trusted")
        kid = header.get("kid")
        if not kid:
            raise Unauthenticated("token header names no signing key (kid)")
        key = await issuer.key(str(kid))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self._audience,
                issuer=unverified.get("iss"),
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "sub", "aud"]},
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("token has expired: sign in again") from error
        except jwt.ImmatureSignatureError as error:
            raise Unauthenticated("token is not valid yet (nbf or iat in the future)") from error
        except jwt.InvalidAudienceError as error:
            raise Unauthenticated(f"token is not meant for this service (aud must be {self._audience!r})") from error
        except jwt.InvalidAlgorithmError as error:
            raise Unauthenticated(f"token algorithm {header.get('alg')!r} does not match its key") from error
        except jwt.InvalidSignatureError as error:
            raise Unauthenticated("token signature does not verify") from error
        except jwt.PyJWTError as error:
            raise Unauthenticated(f"token refused: {error}") from error
        return principal_from_claims(claims)

    def _from_certificate(self, context: grpc.aio.ServicerContext | None) -> Principal | None:
        if context is None or not self._x509_users:
            return None
        subjects = context.auth_context().get("x509_subject") or []
        for subject in subjects:
            principal = self._x509_users.get(canonical_subject(subject.decode() if isinstance(subject, bytes)
                                                               else subject))
            if principal is not None:
                return principal
        raise Unauthenticated(f"certificate subject {subjects[0]!r} is not mapped to a user" if subjects
                              else "no bearer token and no client certificate")

    async def close(self) -> None:
        await self._http.aclose()


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
