"""Signing keys: RSA 2048 for RS256, named by their RFC 7638 thumbprint, published as JWKs;
exactly one active, retired ones published (and kept) while a token they signed may live."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"
KEY_BITS = 2048
ACTIVE = "active"
RETIRED = "retired"

__all__ = [
    "ACTIVE",
    "ALGORITHM",
    "RETIRED",
    "SigningKey",
    "generate_signing_key",
    "load_private_key",
    "public_jwk",
    "published_until",
    "retirement_cutoff",
    "thumbprint",
]


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    algorithm: str
    private_key_pem: str
    # ACTIVE (exactly one) or RETIRED.
    state: str
    create_time: datetime
    retire_time: datetime | None


def generate_signing_key() -> tuple[str, str]:
    """A new key: (kid, private key as PKCS#8 PEM)."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return thumbprint(private_key.public_key()), pem


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, base64url."""
    jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


@lru_cache(maxsize=16)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Parsed once per key: loading checks the key, which costs more than signing."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing keys are RSA keys")
    return key


def public_jwk(pem: str, kid: str) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(load_private_key(pem).public_key(), as_dict=True)
    return {"kty": "RSA", "use": "sig", "alg": ALGORITHM, "kid": kid, "n": jwk["n"], "e": jwk["e"]}


def published_until(retire_time: datetime, longest_token_seconds: int) -> datetime:
    """A retired key stays in the JWKS until the last token it signed has expired."""
    return retire_time + timedelta(seconds=longest_token_seconds)


def retirement_cutoff(now: datetime, longest_token_seconds: int) -> datetime:
    """A key retired at or before this moment signed no token that is still valid: it is no
    longer published, and the next rotation drops it for good."""
    return now - timedelta(seconds=longest_token_seconds)

