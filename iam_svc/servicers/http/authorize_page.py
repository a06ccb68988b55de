"""/authorize, the authorization endpoint (RFC 6749 §4.1.1, OpenID Connect's authentication
request): the authorization request is checked by the OAuth server (client, exact redirect URI,
response type, scope, PKCE); a person signs in on a page of ours, and is sent back to the
client's redirect URI with a code and the client's state.

Where a refusal goes: an unknown client, or a redirect URI the client did not register, is an
error page (sending the person there would hand the answer to whoever wrote the link); every
other refusal goes back to the client with `error` and `state`, as RFC 6749 §4.1.2.1 says.
The sign-in form carries a CSRF token bound to a cookie (forms.FormGuard), and wrong passwords
are throttled by the client's address, with the device page's (domain.throttle)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import BaseGrant, OAuth2Error
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from iam_svc.domain.form_fields import AUTHORIZE_FIELDS, AUTHORIZE_PAGE_FIELDS, FieldError
from iam_svc.domain.throttle import SignInThrottle
from iam_svc.logic import metrics
from iam_svc.logic.provider import Provider
from iam_svc.servicers.http import pages
from iam_svc.servicers.http.device_page import NO_STORE, PAGE_HEADERS
from iam_svc.servicers.http.forms import CSRF_COOKIE, FormGuard, parse_form, read_form
from iam_svc.servicers.http.oauth_server import FormRequest, OAuthResponse, OAuthServer, error_text
from iam_svc.servicers.http.peers import client_address
from panda_runtime.service.db import DbRunner

__all__ = ["AuthorizePages"]

# An origin that may stand in a Content-Security-Policy as it is.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_WRONG_PASSWORD = "Wrong username or password."
# What the sign-in form adds to the authorization request it carries.
_PAGE_ONLY = frozenset(AUTHORIZE_PAGE_FIELDS) - frozenset(AUTHORIZE_FIELDS)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.fullmatch(origin) else ""


class AuthorizePages:
    def __init__(self, db: DbRunner, provider: Provider, server: OAuthServer, guard: FormGuard,
                 throttle: SignInThrottle) -> None:
        self._db = db
        self._provider = provider
        self._server = server
        self._guard = guard
        self._throttle = throttle
        # Behind https, the cookie never travels over plain http.
        self._secure_cookie = provider.issuer.startswith("https://")

    async def page(self, request: Request) -> Response:
        browser_id = request.cookies.get(CSRF_COOKIE) or self._guard.new_browser_id()
        posted = request.method == "POST"
        try:
            if posted:
                fields = await read_form(request, AUTHORIZE_PAGE_FIELDS)
            else:
                fields = parse_form(request.scope.get("query_string", b""), AUTHORIZE_FIELDS)
        except FieldError as error:
            return self._error_page("Not accepted", str(error), browser_id)
        params = {name: value for name, value in fields.items() if name not in _PAGE_ONLY}
        try:
            oauth_request = FormRequest(request.method, str(request.url), request.headers, params)
        except OAuth2Error as error:  # insecure_transport: plain http beyond the loopback
            return self._error_page("Sign-in not possible", error_text(error), browser_id)
        if posted and not self._guard.check_csrf(request.cookies.get(CSRF_COOKIE), fields.get("csrf_token")):
            return self._error_page("Form expired", "This form has expired or did not come from this page. Go "
                                    "back to the page you came from and sign in again (cookies must be enabled).",
                                    browser_id, status=403)
        try:
            grant: BaseGrant = await self._db.run(self._server.validate_authorization_request, oauth_request)
        except OAuth2Error as error:
            return self._refused(oauth_request, error, browser_id)
        if not posted:
            return self._sign_in_page(params, grant, browser_id)
        if fields.get("decision") == "cancel":
            return self._send(await self._db.run(self._server.authorization_response, oauth_request, grant, None))
        return await self._sign_in(oauth_request, params, fields, grant, browser_id, client_address(request))

    async def _sign_in(self, oauth_request: FormRequest, params: Mapping[str, str], fields: Mapping[str, str],
                       grant: BaseGrant, browser_id: str, address: str) -> Response:
        user_name = fields.get("username", "").strip()
        refusal = self._throttle.before_sign_in(address, time.monotonic())
        if refusal is not None:
            metrics.sign_in_failed("throttled")
            wait = refusal.retry_after_seconds
            shown = f"{wait} seconds" if wait < 120 else f"{-(-wait // 60)} minutes"
            return self._sign_in_page(params, grant, browser_id, user_name=user_name, status=429,
                                      error=f"Too many failed sign-ins from your address. Try again in {shown}.",
                                      headers={"Retry-After": str(wait)})
        user = await asyncio.to_thread(self._provider.sign_in, user_name, fields.get("password", ""))
        if user is None:
            self._throttle.password_failed(address, time.monotonic())
            metrics.sign_in_failed("password")
            return self._sign_in_page(params, grant, browser_id, user_name=user_name, status=401,
                                      error=_WRONG_PASSWORD)
        return self._send(await self._db.run(self._server.authorization_response, oauth_request, grant, user))

    def _refused(self, oauth_request: FormRequest, error: OAuth2Error, browser_id: str) -> Response:
        """Back to the client when its redirect URI is known good; an error page otherwise."""
        if error.redirect_uri:
            error.state = oauth_request.payload.state
            return self._send(self._server.error_response(oauth_request, error))
        self._server.error_response(oauth_request, error)  # counted as every refusal is
        return self._error_page("Sign-in not possible", error_text(error), browser_id)

    def _sign_in_page(self, params: Mapping[str, str], grant: BaseGrant, browser_id: str, *, user_name: str = "",
                      error: str = "", status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        client = grant.request.client.client
        redirect_uri = str(grant.redirect_uri or params.get("redirect_uri", ""))
        text = pages.authorize_page(csrf_token=self._guard.csrf_token(browser_id), request=params,
                                    client_id=client.client_id, client_description=client.description,
                                    return_to=_origin(redirect_uri) or redirect_uri, user_name=user_name,
                                    error=error)
        # The form's answer is a redirect to the client: the browser must let the form go there.
        origin = _origin(redirect_uri)
        policy = PAGE_HEADERS["Content-Security-Policy"].replace("form-action 'self'", f"form-action 'self' {origin}")
        return self._html(text, browser_id, status=status,
                          headers={"Content-Security-Policy": policy, **(headers or {})})

    def _error_page(self, title: str, message: str, browser_id: str, status: int = 400) -> Response:
        return self._html(pages.authorize_error_page(title, message), browser_id, status=status)

    @staticmethod
    def _send(answer: OAuthResponse) -> Response:
        return Response(status_code=answer.status, headers={**NO_STORE, "Referrer-Policy": "no-referrer",
                                                            **dict(answer.headers)})

    def _html(self, text: str, browser_id: str, status: int = 200,
              headers: Mapping[str, str] | None = None) -> HTMLResponse:
        response = HTMLResponse(text, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})
        # Strict: a form posted from another site arrives without it, so its CSRF check fails.
        response.set_cookie(CSRF_COOKIE, browser_id, httponly=True, samesite="strict", path="/",
                            secure=self._secure_cookie)
        return response
