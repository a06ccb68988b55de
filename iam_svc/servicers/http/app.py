"""The provider's HTTP side (Starlette): discovery, JWKS, token, device authorization,
revocation, userinfo, and the device verification page people sign in on."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iam_svc.domain import form_fields, oauth, tokens
from iam_svc.domain.accounts import Client, check_grant
from iam_svc.domain.form_fields import FieldError, check_text
from iam_svc.domain.keys import ALGORITHM
from iam_svc.domain.oauth import OAuthError, invalid_request
from iam_svc.domain.throttle import DeviceFlowThrottle
from iam_svc.logic import metrics
from iam_svc.logic.provider import Provider
from iam_svc.servicers.http.device_page import NO_STORE, DevicePages
from iam_svc.servicers.http.forms import FormGuard, read_form
from iam_svc.servicers.http.peers import client_address
from panda_runtime.service.db import DbRunner
from panda_runtime.service.http_metrics import HttpMetrics
from panda_runtime.service.revocation import DISCOVERY_KEY as REVOCATION_LIST_KEY

__all__ = ["build_app"]

log = logging.getLogger("panda.iam.http")

# Verifiers refetch on an unknown kid anyway; this only bounds how stale a cached set gets.
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

Handler = Callable[[Request], Awaitable[Response]]


def oauth_error_response(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        if error.error == "invalid_token":
            headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{error.description}"'
        else:
            headers["WWW-Authenticate"] = 'Basic realm="panda-mesh"'
    if error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def json_endpoint(handler: Handler) -> Handler:
    """OAuthError as RFC 6749 §5.2 JSON (a refused sign-in counted by its reason); anything
    unexpected as server_error, logged."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuthError as error:
            reason = metrics.refusal_reason(error, getattr(request.state, "grant_type", ""))
            if reason is not None:
                metrics.sign_in_failed(reason)
            return oauth_error_response(error)
        except FieldError as error:
            return oauth_error_response(invalid_request(str(error)))
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return JSONResponse({"error": "server_error", "error_description": "internal error"},
                                status_code=500, headers=NO_STORE)
    return wrapped


def client_credentials_of(request: Request, form: Mapping[str, str]) -> tuple[str, str | None]:
    """(client_id, secret or None) from HTTP Basic (client_secret_basic) or the form
    (client_secret_post, or none for a public client); never both."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        check_text("the Authorization header", header, form_fields.BASIC_AUTHORIZATION)
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
        client_id = check_text("client_id", unquote_plus(raw_id), form_fields.TOKEN_FIELDS["client_id"])
        secret = check_text("client_secret", unquote_plus(raw_secret), form_fields.TOKEN_FIELDS["client_secret"])
        if form.get("client_id") not in (None, client_id):
            raise invalid_request("client_id differs from the authenticated client")
        return client_id, secret
    client_id = form.get("client_id") or ""
    if not client_id:
        raise oauth.invalid_client("no client authentication: send client_id (and client_secret, or HTTP Basic)")
    return client_id, form.get("client_secret")


class OidcEndpoints:
    def __init__(self, db: DbRunner, provider: Provider, throttle: DeviceFlowThrottle) -> None:
        self._db = db
        self._provider = provider
        self._issuer = provider.issuer
        self._throttle = throttle

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

    async def _client(self, request: Request, form: Mapping[str, str]) -> Client:
        client_id, secret = client_credentials_of(request, form)
        return await self._db.run(self._provider.authenticate_client, client_id, secret)

    async def token(self, request: Request) -> Response:
        form = await read_form(request, form_fields.TOKEN_FIELDS)
        grant_type = form.get("grant_type") or ""
        if not grant_type:
            raise invalid_request("grant_type is missing")
        if grant_type not in oauth.GRANT_TYPES:
            raise OAuthError("unsupported_grant_type",
                             f"grant type {grant_type!r} is not offered (offered: {', '.join(oauth.GRANT_TYPES)})")
        request.state.grant_type = grant_type  # what a refusal counts under
        client = await self._client(request, form)
        check_grant(client, grant_type)
        scope = form.get("scope")
        if grant_type == oauth.CLIENT_CREDENTIALS:
            body = await self._db.run(self._provider.client_credentials, client, scope)
        elif grant_type == oauth.DEVICE_CODE:
            body = await self._db.run(self._provider.poll_device, client, form.get("device_code"))
        else:
            body = await self._db.run(self._provider.refresh, client, form.get("refresh_token"), scope)
        metrics.token_issued(grant_type)
        return JSONResponse(body, headers=NO_STORE)

    async def device_authorization(self, request: Request) -> Response:
        # Counted before anything else: malformed requests cost their sender as much.
        refusal = self._throttle.device_start(client_address(request), time.monotonic())
        if refusal is not None:
            raise oauth.too_many_requests(
                f"{refusal.why.value}: try again in {refusal.retry_after_seconds} s", refusal.retry_after_seconds)
        form = await read_form(request, form_fields.DEVICE_START_FIELDS)
        client = await self._client(request, form)
        authorization = await self._db.run(self._provider.start_device_authorization, client, form.get("scope"))
        return JSONResponse(authorization, headers=NO_STORE)

    async def revoke(self, request: Request) -> Response:
        form = await read_form(request, form_fields.REVOKE_FIELDS)
        client = await self._client(request, form)
        await self._db.run(self._provider.revoke, client, form.get("token"))
        return Response(status_code=200, headers=NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            metrics.sign_in_failed("access_token")
            return Response(status_code=401, headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="panda-mesh"'})
        check_text("the bearer token", token.strip(), form_fields.ACCESS_TOKEN)
        claims = await self._db.run(self._provider.verify_access_token, token.strip())
        return JSONResponse(await self._db.run(self._provider.userinfo, claims), headers=NO_STORE)


def build_app(db: DbRunner, provider: Provider, guard: FormGuard | None = None,
              throttle: DeviceFlowThrottle | None = None) -> Starlette:
    throttle = throttle or DeviceFlowThrottle()
    endpoints = OidcEndpoints(db, provider, throttle)
    device_pages = DevicePages(db, provider, guard or FormGuard(), throttle)
    return Starlette(middleware=[Middleware(HttpMetrics)], routes=[
        Route("/.well-known/openid-configuration", json_endpoint(endpoints.discovery), methods=["GET"]),
        Route("/jwks", json_endpoint(endpoints.jwks), methods=["GET"]),
        Route("/revocations", json_endpoint(endpoints.revocations), methods=["GET"]),
        Route("/token", json_endpoint(endpoints.token), methods=["POST"]),
        Route("/device_authorization", json_endpoint(endpoints.device_authorization), methods=["POST"]),
        Route("/revoke", json_endpoint(endpoints.revoke), methods=["POST"]),
        Route("/userinfo", json_endpoint(endpoints.userinfo), methods=["GET", "POST"]),
        Route("/device", device_pages.page, methods=["GET", "POST"]),
    ])
