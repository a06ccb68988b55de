"""Opaque secrets the provider hands out (client secrets, refresh tokens, device codes,
authorization codes) and the user codes people type. Only their SHA-256 digests are stored: they
are random and long, so a fast hash is safe, and each token request pays nothing for it."""

from __future__ import annotations

import hashlib
import secrets

__all__ = [
    "USER_CODE_ALPHABET", "USER_CODE_LENGTH", "digest", "new_authorization_code", "new_client_secret",
    "new_device_code", "new_family",
    "new_refresh_token", "new_user_code", "normalize_user_code",
]

# RFC 8628 §6.1: consonants only (no vowels, so no words), no look-alikes; 20^8 ≈ 2^34.6.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def new_device_code() -> str:
    return secrets.token_urlsafe(32)


def new_authorization_code() -> str:
    return secrets.token_urlsafe(32)


def new_family() -> str:
    return secrets.token_hex(16)


def new_user_code() -> str:
    """E.g. "WDJB-MJHT": two groups of four, easy to read out and type."""
    letters = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    return f"{letters[:4]}-{letters[4:]}"


def normalize_user_code(typed: str) -> str | None:
    """The canonical form of what a person typed ("wdjb mjht", "WDJBMJHT" → "WDJB-MJHT"), or None
    when it cannot be a user code."""
    letters = "".join(ch for ch in typed.upper() if ch.isalnum())
    if len(letters) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in letters):
        return None
    return f"{letters[:4]}-{letters[4:]}"
