"""Forms as the endpoints receive them, and the protection of the verification page's forms.

Reading: a form-encoded body (or the device page's query) of bounded size, parsed once, each
field checked against its endpoint's limits (domain.form_fields) before anything else looks at
it. Protection: a CSRF token bound to a cookie, and the short-lived ticket that carries "this
person signed in for this code" from the sign-in form to the approval form. Both are HMACs
under a key this process draws at start: a restart only means reloading the page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from urllib.parse import parse_qsl

from starlette.requests import Request

from iam_svc.domain.form_fields import MAX_FIELDS, MAX_FORM_BYTES, FieldError, check_fields

__all__ = ["CSRF_COOKIE", "FORM_TYPE", "FormGuard", "parse_form", "read_form"]

FORM_TYPE = "application/x-www-form-urlencoded"

CSRF_COOKIE = "panda_iam_csrf"
# The person has this long between signing in and approving.
TICKET_SECONDS = 300


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FormGuard:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, "\x00".join(parts).encode(), hashlib.sha256).digest())

    @staticmethod
    def new_browser_id() -> str:
        """The CSRF cookie's value: random per browser."""
        return secrets.token_urlsafe(24)

    def csrf_token(self, browser_id: str) -> str:
        """The form field matching the cookie. A page on another site can make the browser send
        the cookie, but cannot read it, so it cannot put the matching token in its form."""
        return self._mac("csrf", browser_id)

    def check_csrf(self, browser_id: str | None, token: str | None) -> bool:
        return bool(browser_id and token) and hmac.compare_digest(self.csrf_token(browser_id or ""), token or "")

    def ticket(self, browser_id: str, user_code: str, user_name: str) -> str:
        payload = _b64(json.dumps({"c": user_code, "u": user_name, "e": int(time.time()) + TICKET_SECONDS}).encode())
        return f"{payload}.{self._mac('ticket', browser_id, payload)}"

    def open_ticket(self, browser_id: str | None, ticket: str | None) -> tuple[str, str] | None:
        """(user code, user name) of a ticket this browser got, still fresh; None otherwise."""
        if not browser_id or not ticket or "." not in ticket:
            return None
        payload, mac = ticket.rsplit(".", 1)
        if not hmac.compare_digest(self._mac("ticket", browser_id, payload), mac):
            return None
        try:
            content = json.loads(_unb64(payload))
        except ValueError:
            return None
        if int(content.get("e", 0)) < time.time():
            return None
        return str(content["c"]), str(content["u"])


def parse_form(encoded: bytes, limits: Mapping[str, int]) -> dict[str, str]:
    """The fields of a form-encoded body or query, each given once and within `limits`;
    FieldError otherwise. A byte sequence that is not UTF-8 stays visible (as surrogates) for
    the check to name its field."""
    if len(encoded) > MAX_FORM_BYTES:
        raise FieldError("", f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    try:
        text = encoded.decode("ascii")
    except UnicodeDecodeError:
        raise FieldError("", "the form must be URL-encoded: bytes outside ASCII are percent-encoded") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="surrogateescape",
                          max_num_fields=MAX_FIELDS)
    except ValueError:
        raise FieldError("", f"the form has more than {MAX_FIELDS} fields") from None
    repeated = sorted(name for name, times in Counter(name for name, _ in pairs).items() if times > 1)
    if repeated:
        raise FieldError(repeated[0], f"parameters given more than once: {', '.join(repeated)}")
    fields = dict(pairs)
    check_fields(fields, limits)
    return fields


async def read_form(request: Request, limits: Mapping[str, int]) -> dict[str, str]:
    """The request's form-encoded body, read up to MAX_FORM_BYTES, whose parameters each appear
    once (RFC 6749 §3.2), each within `limits` (parse_form)."""
    if not request.headers.get("content-type", "").startswith(FORM_TYPE):
        raise FieldError("", f"send the parameters as {FORM_TYPE}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise FieldError("", f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise FieldError("", f"the form is larger than {MAX_FORM_BYTES // 1024} KiB")
    return parse_form(bytes(body), limits)
