"""What the provider's HTTP endpoints accept in a form (and the device page in its query): how
long each field may be, and that it is text (valid UTF-8, no NUL or other control characters;
a password may hold any character but NUL). Whatever breaks a rule is refused with a message
naming the field, before anything else looks at the request. No I/O."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

__all__ = [
    "ACCESS_TOKEN", "AUTHORIZE_FIELDS", "AUTHORIZE_PAGE_FIELDS", "BASIC_AUTHORIZATION", "DEVICE_PAGE_FIELDS",
    "DEVICE_START_FIELDS", "MAX_FIELDS", "MAX_FORM_BYTES", "OTHER_FIELD", "REVOKE_FIELDS", "TOKEN_FIELDS",
    "FieldError", "check_fields", "check_text",
]

# A form's whole body (every field below fits with room to spare), and how many fields it holds.
MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 32

# Characters per field. Client ids and user names are at most 64 (names.py); the opaque tokens
# the provider hands out are 43; scopes and access tokens are given room.
_CLIENT = {"client_id": 64, "client_secret": 256}
TOKEN_FIELDS: dict[str, int] = {**_CLIENT, "grant_type": 128, "scope": 1024, "device_code": 128,
                                "refresh_token": 128, "code": 128, "code_verifier": 128, "redirect_uri": 2000}
DEVICE_START_FIELDS: dict[str, int] = {**_CLIENT, "scope": 1024}
REVOKE_FIELDS: dict[str, int] = {**_CLIENT, "token": 8192, "token_type_hint": 64}
DEVICE_PAGE_FIELDS: dict[str, int] = {"user_code": 32, "username": 128, "password": 1024, "csrf_token": 128,
                                      "step": 16, "ticket": 1024, "decision": 16}
# An authorization request (the authorization endpoint's query, and its sign-in form's hidden
# fields): its redirect URI as long as a client's may be, state and nonce as the client makes them.
AUTHORIZE_FIELDS: dict[str, int] = {"client_id": 64, "response_type": 64, "redirect_uri": 2000, "scope": 1024,
                                    "state": 1024, "nonce": 512, "code_challenge": 128,
                                    "code_challenge_method": 16, "prompt": 64, "response_mode": 16}
# ... and what the sign-in form adds to it.
AUTHORIZE_PAGE_FIELDS: dict[str, int] = {**AUTHORIZE_FIELDS, "username": 128, "password": 1024,
                                         "csrf_token": 128, "decision": 16}
# Fields a form may carry beyond its own (OAuth says to ignore parameters it does not know).
OTHER_FIELD = 256
# The bearer token of /userinfo, and a client's HTTP Basic header (its id and secret, each
# form-encoded, then base64).
ACCESS_TOKEN = 8192
BASIC_AUTHORIZATION = 2048
# Fields where any character but NUL is allowed: people choose their passwords.
FREE_TEXT = frozenset({"password"})


class FieldError(ValueError):
    """A field the request may not carry as it is: `field` names it, the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_text(field: str, value: str, limit: int) -> str:
    """The value, if it keeps the rules of a field of at most `limit` characters."""
    if len(value) > limit:
        raise FieldError(field, f"{field} is longer than {limit} characters")
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        raise FieldError(field, f"{field} is not valid UTF-8")
    if "\x00" in value:
        raise FieldError(field, f"{field} contains a NUL character")
    if field not in FREE_TEXT and any(unicodedata.category(ch) == "Cc" for ch in value):
        raise FieldError(field, f"{field} contains a control character")
    return value


def check_fields(fields: Mapping[str, str], limits: Mapping[str, int]) -> None:
    """Every field of a form against `limits` (fields it does not name: OTHER_FIELD)."""
    if len(fields) > MAX_FIELDS:
        raise FieldError("", f"the form has more than {MAX_FIELDS} fields")
    for name, value in fields.items():
        check_text("field name", name, OTHER_FIELD)
        check_text(name, value, limits.get(name, OTHER_FIELD))
