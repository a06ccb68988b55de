"""The provider's HTTP side (Starlette): discovery, JWKS, token, device authorization,
revocation, userinfo, and the device verification page people sign in on."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from iam_svc.domain import codes, device, oauth, tokens
from iam_svc.domain.accounts import Client, check_grant, sign_in_name
from iam_svc.domain.device import Decision
from iam_svc.domain.keys import ALGORITHM
from iam_svc.domain.oauth import OAuthError, invalid_request
from iam_svc.domain.throttle import SignInThrottle
from iam_svc.logic.provider import Provider
from iam_svc.servicers.http import pages
from iam_svc.servicers.http.forms import CSRF_COOKIE, FormGuard
from panda_runtime.service.db import DbRunner, now
from panda_runtime.service.revocation import DISCOVERY_KEY as REVOCATION_LIST_KEY

__all__ = ["build_app"]

log = logging.getLogger("panda.iam.http")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Verifiers refetch on an unknown kid anyway; this only bounds how stale a cached set gets.
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

Handler = Callable[[Request], Awaitable[Response]]


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        if error.error == "invalid_token":
            headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{error.description}"'
        else:
            headers["WWW-Authenticate"] = 'Basic realm="panda-mesh"'
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def json_endpoint(handler: Handler) -> Handler:
    """OAuthError as RFC 6749 §5.2 JSON; anything unexpected as server_error, logged."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuthError as error:
            return oauth_error_response(error)
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "server_error", "error_description": "internal error"},
                                status_code=500, headers=NO_STORE)
    return wrapped


async def read_form(request: Request) -> FormData:
    """A form-encoded body whose parameters each appear once (RFC 6749 §3.2)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise invalid_request("send the parameters as application/x-www-form-urlencoded")
    form = await request.form()
    repeated = sorted({key for key, _ in form.multi_items() if len(form.getlist(key)) > 1})
    if repeated:
        raise invalid_request(f"parameters given more than once: {', '.join(repeated)}")
    return form


def client_credentials_of(request: Request, form: FormData) -> tuple[str, str | None]:
    """(client_id, secret or None) from HTTP Basic (client_secret_basic) or the form
    (client_secret_post, or none for a public client); never both."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        if "client_secret" in form:
            raise invalid_request("use one client authentication method, not Basic and client_secret both")
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as error:
            raise oauth.invalid_client("malformed Basic authorization header") from error
        raw_id, separator, raw_secret = decoded.partition(":")
        if not separator:
            raise oauth.invalid_client("malformed Basic authorization header")
        # RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
        client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        if form.get("client_id") not in (None, client_id):
            raise invalid_request("client_id differs from the authenticated client")
        return client_id, secret
    client_id = str(form.get("client_id") or "")
    if not client_id:
        raise oauth.invalid_client("no client authentication: send client_id (and client_secret, or HTTP Basic)")
    posted_secret = form.get("client_secret")
    return client_id, None if posted_secret is None else str(posted_secret)


class OidcEndpoints:
    def __init__(self, db: DbRunner, provider: Provider) -> None:
        self._db = db
        self._provider = provider
        self._issuer = provider.issuer

    async def discovery(self, request: Request) -> Response:
        issuer = self._issuer
        return JSONResponse({
            "issuer": issuer,
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/token",
            "device_authorization_endpoint": f"{issuer}/device_authorization",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "revocation_endpoint": f"{issuer}/revoke",
            # Users disabled or deleted and clients deleted, for every service's token check.
            REVOCATION_LIST_KEY: f"{issuer}/revocations",
            "grant_types_supported": list(oauth.GRANT_TYPES),
            # No authorization endpoint: every grant offered is made at the token endpoint.
            "response_types_supported": [],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
            "scopes_supported": list(tokens.SUPPORTED_SCOPES),
            "claims_supported": list(tokens.CLAIMS_SUPPORTED),
        }, headers=JWKS_CACHE)

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(await self._db.run(self._provider.jwks), headers=JWKS_CACHE)

    async def revocations(self, request: Request) -> Response:
        # Never cached on the way: the token checks count on seeing a revocation within seconds.
        return JSONResponse(await self._db.run(self._provider.revocation_list), headers=NO_STORE)

    async def _client(self, request: Request, form: FormData) -> Client:
        client_id, secret = client_credentials_of(request, form)
        return await self._db.run(self._provider.authenticate_client, client_id, secret)

    async def token(self, request: Request) -> Response:
        form = await read_form(request)
        grant_type = str(form.get("grant_type") or "")
        if not grant_type:
            raise invalid_request("grant_type is missing")
        if grant_type not in oauth.GRANT_TYPES:
            raise OAuthError("unsupported_grant_type",
                             f"grant type {grant_type!r} is not offered (offered: {', '.join(oauth.GRANT_TYPES)})")
        client = await self._client(request, form)
        check_grant(client, grant_type)
        scope = form.get("scope")
        scope_text = None if scope is None else str(scope)
        if grant_type == oauth.CLIENT_CREDENTIALS:
            body = await self._db.run(self._provider.client_credentials, client, scope_text)
        elif grant_type == oauth.DEVICE_CODE:
            body = await self._db.run(self._provider.poll_device, client, _text(form, "device_code"))
        else:
            body = await self._db.run(self._provider.refresh, client, _text(form, "refresh_token"), scope_text)
        return JSONResponse(body, headers=NO_STORE)

    async def device_authorization(self, request: Request) -> Response:
        form = await read_form(request)
        client = await self._client(request, form)
        authorization = await self._db.run(self._provider.start_device_authorization, client, _text(form, "scope"))
        return JSONResponse(authorization, headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        form = await read_form(request)
        client = await self._client(request, form)
        await self._db.run(self._provider.revoke, client, _text(form, "token"))
        return Response(status_code=200, headers=NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Response(status_code=401, headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="panda-mesh"'})
        claims = await self._db.run(self._provider.verify_access_token, token.strip())
        return JSONResponse(await self._db.run(self._provider.userinfo, claims), headers=NO_STORE)


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return None if value is None else str(value)


class DevicePages:
    """/device: the person enters the code and signs in, then sees what they approve."""

    def __init__(self, db: DbRunner, provider: Provider, guard: FormGuard) -> None:
        self._db = db
        self._provider = provider
        self._guard = guard
        self._throttle = SignInThrottle()
        # Behind https, the cookie never travels over plain http.
        self._secure_cookie = provider.issuer.startswith("https://")

    async def page(self, request: Request) -> Response:
        browser_id = request.cookies.get(CSRF_COOKIE) or self._guard.new_browser_id()
        if request.method == "GET":
            typed = request.query_params.get("user_code", "")
            return self._html(pages.sign_in_page(csrf_token=self._guard.csrf_token(browser_id),
                                                 user_code=codes.normalize_user_code(typed) or typed), browser_id)
        form = await request.form()
        if not self._guard.check_csrf(request.cookies.get(CSRF_COOKIE), _text(form, "csrf_token")):
            return self._html(pages.error_page(
                "Form expired", "This form has expired or did not come from this page. Reload the page and try "
                "again (cookies must be enabled)."), browser_id, status=403)
        if form.get("step") == "decide":
            return await self._decide(form, browser_id)
        return await self._sign_in(form, browser_id)

    async def _sign_in(self, form: FormData, browser_id: str) -> Response:
        typed_code, user_name = _text(form, "user_code") or "", (_text(form, "username") or "").strip()
        csrf = self._guard.csrf_token(browser_id)

        def again(error: str, status: int) -> Response:
            return self._html(pages.sign_in_page(csrf_token=csrf, user_code=typed_code, user_name=user_name,
                                                 error=error), browser_id, status=status)

        user_code = codes.normalize_user_code(typed_code)
        found = await self._db.run(self._provider.pending_device_code, user_code) if user_code else None
        if user_code is None or found is None:
            return again("That code is not valid. Check it against the one your terminal shows "
                         "(8 letters, such as WDJB-MJHT).", 400)
        problem = _CODE_PROBLEMS.get(device.decide(found, now()))
        if problem:
            return again(problem, 400)
        account = sign_in_name(user_name)
        if self._throttle.blocked(account, time.monotonic()):
            return again("Too many failed sign-ins for this account. Wait a few minutes and try again.", 429)
        user = await asyncio.to_thread(self._provider.sign_in, user_name, _text(form, "password") or "")
        if user is None:
            self._throttle.failed(account, time.monotonic())
            return again("Wrong username or password.", 401)
        self._throttle.succeeded(account)
        client = await self._db.run(self._provider.find_client, found.client_id)
        return self._html(pages.consent_page(
            csrf_token=csrf, ticket=self._guard.ticket(browser_id, found.user_code, user.name),
            user_name=user.name, display_name=user.display_name, user_code=found.user_code,
            client_id=found.client_id, client_description=client.description if client else "",
            scopes=found.scope.split(), groups=user.groups), browser_id)

    async def _decide(self, form: FormData, browser_id: str) -> Response:
        opened = self._guard.open_ticket(browser_id, _text(form, "ticket"))
        if opened is None:
            return self._html(pages.error_page("Sign-in expired", "Too much time passed since you signed in, or "
                                               "the form was altered. Sign in again."), browser_id, status=400)
        user_code, user_name = opened
        decision = _text(form, "decision")
        if decision not in ("approve", "deny"):
            return self._html(pages.error_page("Choose", "Choose Approve or Deny."), browser_id, status=400)
        approve = decision == "approve"
        found = await self._db.run(self._provider.pending_device_code, user_code)
        outcome = await self._db.run(self._provider.decide_device_code, user_code, user_name, approve)
        if outcome is Decision.EXPIRED:
            return self._html(pages.error_page("Code expired", _EXPIRED, retry=False), browser_id, status=400)
        if outcome is not Decision.DONE:
            return self._html(pages.error_page("Code already used", _ALREADY_DECIDED, retry=False), browser_id,
                              status=400)
        return self._html(pages.result_page(approved=approve, client_id=found.client_id if found else ""),
                          browser_id)

    def _html(self, text: str, browser_id: str, status: int = 200) -> HTMLResponse:
        response = HTMLResponse(text, status_code=status, headers=PAGE_HEADERS)
        # Strict: a form posted from another site arrives without it, so its CSRF check fails.
        response.set_cookie(CSRF_COOKIE, browser_id, httponly=True, samesite="strict", path="/",
                            secure=self._secure_cookie)
        return response


_EXPIRED = "This code has expired. Run `panda login` again to get a new one."
_ALREADY_DECIDED = "This code was already approved or denied. Run `panda login` again if you need a new one."


# What the person reads when a code can no longer be decided (device.decide).
_CODE_PROBLEMS = {Decision.EXPIRED: _EXPIRED, Decision.ALREADY_DECIDED: _ALREADY_DECIDED}


def build_app(db: DbRunner, provider: Provider, guard: FormGuard | None = None) -> Starlette:
    endpoints = OidcEndpoints(db, provider)
    device_pages = DevicePages(db, provider, guard or FormGuard())
    return Starlette(routes=[
        Route("/.well-known/openid-configuration", json_endpoint(endpoints.discovery), methods=["GET"]),
        Route("/jwks", json_endpoint(endpoints.jwks), methods=["GET"]),
        Route("/revocations", json_endpoint(endpoints.revocations), methods=["GET"]),
        Route("/token", json_endpoint(endpoints.token), methods=["POST"]),
        Route("/device_authorization", json_endpoint(endpoints.device_authorization), methods=["POST"]),
        Route("/revoke", json_endpoint(endpoints.revoke), methods=["POST"]),
        Route("/userinfo", json_endpoint(endpoints.userinfo), methods=["GET", "POST"]),
        Route("/device", device_pages.page, methods=["GET", "POST"]),
    ])
