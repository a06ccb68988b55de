"""Password hashing: argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from panda_runtime.service.errors import InvalidArgument

__all__ = [
    "MAX_PASSWORD_LENGTH", "MIN_PASSWORD_LENGTH", "check_password", "hash_password", "needs_rehash",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024

_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name takes as long as a wrong
# password and sign-in does not tell which accounts exist.
_UNKNOWN_USER_HASH = _hasher.hash("no such user: this hash only keeps the timing even")


def check_password(password: str, field: str = "password") -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(f"a password needs at least {MIN_PASSWORD_LENGTH} characters", field=field)
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(f"a password has at most {MAX_PASSWORD_LENGTH} characters", field=field)
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; an empty hash (no password set) matches nothing."""
    try:
        return _hasher.verify(password_hash or _UNKNOWN_USER_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's defaults."""
    return _hasher.check_needs_rehash(password_hash)
