"""The web monitor's sign-in: the authorization code flow with PKCE (S256) against the identity
service, by Authlib's client, as the public client `panda-monitor`. The tokens it gets stay in
the session cookie (signed, HTTP-only), never in a page; an access token near its end is renewed
with the refresh token before a page reads with it."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import OAuth
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["MONITOR_PATH", "SESSION_CSRF", "SESSION_TOKEN", "MonitorSignIn", "SignInFailed", "safe_next"]

MONITOR_PATH = "/monitor"
# Where the session keeps the signed-in person's access token, and the pages' form token.
SESSION_TOKEN = "access_token"
SESSION_CSRF = "csrf"

log = logging.getLogger("panda.gateway.monitor")

_REFRESH_TOKEN = "refresh_token"
_EXPIRES_AT = "expires_at"
_NEXT = "next"
# Renew an access token this long before it ends, so a page's reads do not race its expiry.
_RENEW_BEFORE_SECONDS = 30


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a monitor page of this site, never elsewhere."""
    if value and value.startswith(MONITOR_PATH + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return MONITOR_PATH + "/"


class SignInFailed(Exception):
    pass


class MonitorSignIn:
    def __init__(self, issuer: str, client_id: str, redirect_uri: str) -> None:
        self._redirect_uri = redirect_uri
        self._oauth = OAuth()
        self._client: Any = self._oauth.register(
            name="panda", client_id=client_id, client_secret=None,
            server_metadata_url=issuer.rstrip("/") + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid", "code_challenge_method": "S256",
                           "token_endpoint_auth_method": "none"})

    async def start(self, request: Request, next_page: str | None) -> Response:
        """Off to the identity service's sign-in page; back at the callback, then at `next_page`."""
        request.session[_NEXT] = safe_next(next_page)
        response: Response = await self._client.authorize_redirect(request, self._redirect_uri)
        return response

    async def finish(self, request: Request) -> str:
        """The callback: the code exchanged (with the PKCE verifier) for tokens, kept in the
        session; returns the page to go to. SignInFailed when the identity service refused."""
        try:
            token = await self._client.authorize_access_token(request)
        except OAuthError as error:
            log.info("monitor sign-in refused: %s", error.error)
            raise SignInFailed(error.description or error.error) from None
        self._keep(request, token)
        request.session[SESSION_CSRF] = secrets.token_urlsafe(24)
        return safe_next(request.session.pop(_NEXT, None))

    @staticmethod
    def _keep(request: Request, token: dict[str, Any]) -> None:
        request.session[SESSION_TOKEN] = token["access_token"]
        request.session[_REFRESH_TOKEN] = token.get("refresh_token") or ""
        request.session[_EXPIRES_AT] = int(token.get("expires_at") or time.time() + int(token.get("expires_in", 300)))

    async def renew_if_ending(self, request: Request) -> None:
        """Before a page reads: an access token about to end is renewed with the refresh token;
        when that fails the session forgets both, and the page asks to sign in again."""
        session = request.scope.get("session")
        if not session or not session.get(SESSION_TOKEN):
            return
        if int(session.get(_EXPIRES_AT, 0)) - _RENEW_BEFORE_SECONDS > time.time():
            return
        refresh = session.get(_REFRESH_TOKEN)
        if not refresh:
            session.pop(SESSION_TOKEN, None)
            return
        try:
            token = await self._client.fetch_access_token(grant_type="refresh_token", refresh_token=refresh)
        except Exception as error:  # the identity service refused or is away: sign in again
            log.info("monitor session not renewed: %s", error)
            session.pop(SESSION_TOKEN, None)
            session.pop(_REFRESH_TOKEN, None)
            return
        self._keep(request, token)
