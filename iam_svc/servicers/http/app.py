"""The provider's HTTP side (Starlette): discovery, JWKS, token, device authorization,
revocation, userinfo, the authorization endpoint's sign-in page, and the device verification
page people sign in on. The OAuth protocol of the token, device authorization, revocation and
authorization endpoints is the OAuth server's (oauth_server.OAuthServer, on Authlib): this reads
and checks the forms, hands them over on a database thread, and sends back what it answers."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from authlib.oauth2.rfc6749.errors import OAuth2Error
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from iam_svc.domain import authorization, form_fields, oauth, tokens
from iam_svc.domain.form_fields import FieldError, check_text
from iam_svc.domain.keys import ALGORITHM
from iam_svc.domain.oauth import invalid_request
from iam_svc.domain.throttle import SignInThrottle
from iam_svc.logic import metrics
from iam_svc.logic.provider import Provider
from iam_svc.servicers.http.authorize_page import AuthorizePages
from iam_svc.servicers.http.device_page import NO_STORE, DevicePages
from iam_svc.servicers.http.forms import FormGuard, read_form
from iam_svc.servicers.http.oauth_server import AUTH_METHODS, FormRequest, OAuthResponse, OAuthServer
from iam_svc.servicers.http.peers import client_address
from panda_runtime.service.db import DbRunner
from panda_runtime.service.http_metrics import HttpMetrics
from panda_runtime.service.revocation import DISCOVERY_KEY as REVOCATION_LIST_KEY

__all__ = ["build_app", "send"]

log = logging.getLogger("panda.iam.http")

# Verifiers refetch on an unknown kid anyway; this only bounds how stale a cached set gets.
JWKS_CACHE = {"Cache-Control": "public, max-age=300"}

Handler = Callable[[Request], Awaitable[Response]]


def send(answer: OAuthResponse) -> Response:
    """The OAuth server's answer over HTTP: a JSON body, or a redirect (a Location and no body)."""
    if isinstance(answer.body, dict):
        return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))
    return Response(answer.body or b"", status_code=answer.status, headers={**NO_STORE, **dict(answer.headers)})


def oauth_error_response(error: OAuth2Error) -> Response:
    """An OAuth error raised outside the OAuth server (a field over its limit, userinfo's token)."""
    return send(OAuthResponse(*error()))


def json_endpoint(handler: Handler) -> Handler:
    """An OAuth error as RFC 6749 §5.2 JSON (a refused sign-in counted by its reason); anything
    unexpected as server_error, logged."""
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except OAuth2Error as error:
            reason = metrics.refusal_reason(error)
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


def oauth_request(request: Request, params: Mapping[str, str]) -> FormRequest:
    return FormRequest(request.method, str(request.url), request.headers, params)


class OidcEndpoints:
    def __init__(self, db: DbRunner, provider: Provider, server: OAuthServer, throttle: SignInThrottle) -> None:
        self._db = db
        self._provider = provider
        self._server = server
        self._issuer = provider.issuer
        self._throttle = throttle

    async def discovery(self, request: Request) -> Response:
        issuer = self._issuer
        return JSONResponse({
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "jwks_uri": f"{issuer}/jwks",
            "token_endpoint": f"{issuer}/token",
            "device_authorization_endpoint": f"{issuer}/device_authorization",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "revocation_endpoint": f"{issuer}/revoke",
            # Users disabled or deleted, clients deleted and sign-ins revoked, for every service's token check.
            REVOCATION_LIST_KEY: f"{issuer}/revocations",
            "grant_types_supported": list(oauth.GRANT_TYPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": [authorization.CODE_CHALLENGE_METHOD],
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

    async def token(self, request: Request) -> Response:
        form = await read_form(request, form_fields.TOKEN_FIELDS)
        return send(await self._db.run(self._server.create_token_response, oauth_request(request, form)))

    async def device_authorization(self, request: Request) -> Response:
        # Counted before anything else: malformed requests cost their sender as much.
        refusal = self._throttle.device_start(client_address(request), time.monotonic())
        if refusal is not None:
            raise oauth.too_many_requests(
                f"{refusal.why.value}: try again in {refusal.retry_after_seconds} s", refusal.retry_after_seconds)
        form = await read_form(request, form_fields.DEVICE_START_FIELDS)
        return send(await self._db.run(self._server.create_endpoint_response, "device_authorization",
                                       oauth_request(request, form)))

    async def revoke(self, request: Request) -> Response:
        form = await read_form(request, form_fields.REVOKE_FIELDS)
        return send(await self._db.run(self._server.create_endpoint_response, "revocation",
                                       oauth_request(request, form)))

    async def userinfo(self, request: Request) -> Response:
        # A bearer token, not a client: the OAuth server has no part in it (Authlib's UserInfo
        # endpoint would want its resource protector, for one check the provider already makes).
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            metrics.sign_in_failed("access_token")
            return Response(status_code=401, headers={**NO_STORE, "WWW-Authenticate": 'Bearer realm="panda-mesh"'})
        check_text("the bearer token", token.strip(), form_fields.ACCESS_TOKEN)
        claims = await self._db.run(self._provider.verify_access_token, token.strip())
        return JSONResponse(await self._db.run(self._provider.userinfo, claims), headers=NO_STORE)


def build_app(db: DbRunner, provider: Provider, guard: FormGuard | None = None,
              throttle: SignInThrottle | None = None) -> Starlette:
    throttle = throttle or SignInThrottle()
    guard = guard or FormGuard()
    server = OAuthServer(provider)
    endpoints = OidcEndpoints(db, provider, server, throttle)
    device_pages = DevicePages(db, provider, guard, throttle)
    authorize_pages = AuthorizePages(db, provider, server, guard, throttle)
    return Starlette(middleware=[Middleware(HttpMetrics)], routes=[
        Route("/.well-known/openid-configuration", json_endpoint(endpoints.discovery), methods=["GET"]),
        Route("/jwks", json_endpoint(endpoints.jwks), methods=["GET"]),
        Route("/revocations", json_endpoint(endpoints.revocations), methods=["GET"]),
        Route("/authorize", authorize_pages.page, methods=["GET", "POST"]),
        Route("/token", json_endpoint(endpoints.token), methods=["POST"]),
        Route("/device_authorization", json_endpoint(endpoints.device_authorization), methods=["POST"]),
        Route("/revoke", json_endpoint(endpoints.revoke), methods=["POST"]),
        Route("/userinfo", json_endpoint(endpoints.userinfo), methods=["GET", "POST"]),
        Route("/device", device_pages.page, methods=["GET", "POST"]),
    ])
