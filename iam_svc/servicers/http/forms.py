"""Protection of the verification page's forms: a CSRF token bound to a cookie, and the
short-lived ticket that carries "this person signed in for this code" from the sign-in form
to the approval form. Both are HMACs under a key this process draws at start: a restart only
means reloading the page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

__all__ = ["CSRF_COOKIE", "FormGuard"]

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
