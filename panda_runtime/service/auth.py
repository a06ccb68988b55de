"""Who is calling, and may they: the token check every service runs on every call.

A call carries `authorization: Bearer <JWT>`. The token's `iss` must be a trusted issuer; its
signature is checked with a key from that issuer's JWKS (found through its discovery document,
cached, refetched when a token names an unknown `kid`), with the algorithm the key itself
dictates, never the one the token's header asks for. `aud`, `exp`, `nbf` and `iat` are checked
with a small leeway. WLCG groups (`wlcg.groups`) become grants: `/vo` (or any subgroup) makes a
member of the VO ("user"), `/vo/<role>` grants that role in the VO. An issuer that publishes a
revocation list (panda_runtime.service.revocation) has it checked on every call, cached tokens
included, so a disabled or deleted account's tokens stop working once the list is refetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import httpx
import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from prometheus_client import Counter

from panda_runtime.service.errors import Unauthenticated
from panda_runtime.service.principals import (
    ANONYMOUS_PRINCIPAL,
    Principal,
    canonical_subject,
    principal_from_claims,
)
from panda_runtime.service.revocation import DISCOVERY_KEY, RevocationFeed

__all__ = ["AUTH_FAILURES", "AUTH_FAILURE_REASONS", "AnonymousAuthenticator", "Authenticator", "TokenAuthenticator",
           "bearer_token"]

log = logging.getLogger("panda.auth")

# Why the token check refused a call: the `reason` label of panda_auth_failures_total.
AUTH_FAILURE_REASONS = (
    "no_credentials",  # no bearer token (and no mapped client certificate)
    "malformed",  # not `Bearer <token>`, or not a JWT
    "untrusted_issuer",  # `iss` is no trusted issuer
    "unknown_key",  # no `kid`, or one the issuer does not publish
    "keys_unavailable",  # the issuer's signing keys could not be fetched
    "expired",
    "not_yet_valid",  # `nbf` or `iat` in the future
    "wrong_audience",
    "bad_algorithm",  # not the algorithm of the key
    "bad_signature",
    "invalid_claims",  # any other claim missing or wrong
    "revoked",  # the account or client was disabled or deleted since the token was issued
    "revocations_unavailable",  # the issuer's revocation list could not be fetched
    "unmapped_certificate",  # legacy x509: a certificate no user is mapped to
)
AUTH_FAILURES = Counter(
    "panda_auth_failures_total", "Calls the token check refused (UNAUTHENTICATED), by reason.", ["reason"]
)
for _reason in AUTH_FAILURE_REASONS:
    AUTH_FAILURES.labels(_reason)


class _Refused(Unauthenticated):
    """UNAUTHENTICATED, and why (one of AUTH_FAILURE_REASONS), for the count."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason




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
            raise _Refused("malformed", "the authorization header must be `Bearer <token>`")
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

    def __init__(self, url: str, http: httpx.AsyncClient, min_refresh: float, max_age: float,
                 revocation_refresh: float) -> None:
        self.url = url.rstrip("/")
        self._http = http
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._revocation_refresh = revocation_refresh
        # The issuer's revocation list, once its discovery document names one.
        self.revocations: RevocationFeed | None = None
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
            raise _Refused("unknown_key", f"token signed with key {kid!r}, which issuer {self.url} does not publish")
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
                raise _Refused("keys_unavailable",
                               f"cannot fetch the signing keys of issuer {self.url}: {error}") from error
            return
        await self._follow_revocations(document.get(DISCOVERY_KEY))
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("issuer %s publishes %d signing key(s)", self.url, len(keys))


    async def _follow_revocations(self, url: object) -> None:
        """Follows the revocation list the discovery document names. Once an issuer has named
        one, a later document that leaves it out does not stop the checks."""
        if isinstance(url, str) and url and (self.revocations is None or self.revocations.url != url):
            previous, self.revocations = self.revocations, RevocationFeed(
                self.url, url, self._http, self._revocation_refresh)
            if previous is not None:
                await previous.close()

    async def close(self) -> None:
        if self.revocations is not None:
            await self.revocations.close()


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
        revocation_refresh_seconds: float = 15.0,
        cache_size: int = 10_000,
        x509_users: Mapping[str, Principal] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=5.0)
        self._issuers = {
            url.rstrip("/"): _Issuer(url, self._http, jwks_min_refresh_seconds, jwks_max_age_seconds,
                                     revocation_refresh_seconds)
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
        try:
            token = bearer_token(metadata)
            if token is None:
                principal = self._from_certificate(context)
                if principal is None:
                    raise _Refused("no_credentials", f"{method} needs a bearer token: sign in with `panda login`")
                return principal
            return await self.verify(token)
        except Unauthenticated as error:
            AUTH_FAILURES.labels(error.reason if isinstance(error, _Refused) else "invalid_claims").inc()
            raise

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at > time.time() - self._leeway:
                self._cache.move_to_end(token)
                await self._check_not_revoked(cached)
                return cached
            del self._cache[token]
        principal = await self._verify(token)
        await self._check_not_revoked(principal)
        self._cache[token] = principal
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    async def _check_not_revoked(self, principal: Principal) -> None:
        issuer = self._issuers.get(principal.issuer.rstrip("/"))
        feed = issuer.revocations if issuer is not None else None
        if feed is None:
            return
        revoked = await feed.current()
        if revoked is None:
            raise _Refused("revocations_unavailable",
                           f"cannot fetch the revocation list of issuer {feed.issuer}: try again shortly")
        refusal = revoked.refusal(principal.subject, principal.client_id, principal.issued_at, principal.session)
        if refusal is not None:
            raise _Refused("revoked", refusal)

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as error:
            raise _Refused("malformed", f"malformed token: {error}") from error
        issuer_url = str(unverified.get("iss", "")).rstrip("/")
        issuer = self._issuers.get(issuer_url)
        if issuer is None:
            raise _Refused("untrusted_issuer", f"token issuer {unverified.get('iss')!r} is not trusted")
        kid = header.get("kid")
        if not kid:
            raise _Refused("unknown_key", "token header names no signing key (kid)")
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
            raise _Refused("expired", "token has expired: sign in again") from error
        except jwt.ImmatureSignatureError as error:
            raise _Refused("not_yet_valid", "token is not valid yet (nbf or iat in the future)") from error
        except jwt.InvalidAudienceError as error:
            raise _Refused("wrong_audience",
                           f"token is not meant for this service (aud must be {self._audience!r})") from error
        except jwt.InvalidAlgorithmError as error:
            raise _Refused("bad_algorithm", f"token algorithm {header.get('alg')!r} does not match its key") from error
        except jwt.InvalidSignatureError as error:
            raise _Refused("bad_signature", "token signature does not verify") from error
        except jwt.PyJWTError as error:
            raise _Refused("invalid_claims", f"token refused: {error}") from error
        return principal_from_claims(claims)

    def _from_certificate(self, context: grpc.aio.ServicerContext | None) -> Principal | None:
        if context is None or not self._x509_users:
            return None
        subjects = list(context.auth_context().get("x509_subject") or [])
        for subject in subjects:
            principal = self._x509_users.get(canonical_subject(subject.decode() if isinstance(subject, bytes)
                                                               else subject))
            if principal is not None:
                return principal
        raise _Refused("unmapped_certificate" if subjects else "no_credentials",
                       f"certificate subject {subjects[0]!r} is not mapped to a user" if subjects
                       else "no bearer token and no client certificate")

    async def close(self) -> None:
        for issuer in self._issuers.values():
            await issuer.close()
        await self._http.aclose()


