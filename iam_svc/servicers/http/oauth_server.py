"""The provider's OAuth 2.0 protocol, on Authlib's authorization server: which grant a token
request asks for, how a client authenticates, how a refusal goes out, the authorization
endpoint's checks (client, exact redirect URI, response type, scope, PKCE), and what a code is
bound to. What each grant then does (rotating a refresh token, polling a device code, spending a
code) is the provider's (logic.provider), with the domain's rules.

Why Authlib (its framework-agnostic core, `authlib.oauth2.rfc6749.AuthorizationServer`) rather
than oauthlib's `WebApplicationServer`: Authlib's grants are classes to subclass, one method per
step, with the authorization code grant's PKCE (`CodeChallenge`) an extension that can be held
to S256; the device code grant (RFC 8628) and revocation (RFC 7009) sit in the same server, so
every grant is dispatched, authenticated and refused one way, and a grant whose work is one
transaction of ours (a refresh rotation, a device poll) overrides one step. oauthlib routes every
decision through one `RequestValidator` of many callbacks shared by all grants, which our
one-transaction steps would have to be cut up to fit. Authlib is actively released, and it is
synchronous, as the provider is, so a whole request runs on the database's threads.

The glue is ours: a `FormRequest` holds a request's method, URL, headers and its form (already
read and checked, forms.read_form), and every answer comes back as an `OAuthResponse` (status,
body, headers) for the HTTP edge to send."""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    BaseGrant,
    ClientMixin,
    OAuth2Error,
    OAuth2Request,
    TokenEndpointMixin,
)
from authlib.oauth2.rfc6749 import grants as rfc6749_grants
from authlib.oauth2.rfc6749.authenticate_client import ClientAuthentication
from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint

from iam_svc.domain import accounts, authorization, codes, form_fields, oauth, tokens
from iam_svc.domain.accounts import Client, User
from iam_svc.domain.authorization import AuthorizationCode
from iam_svc.domain.form_fields import check_text
from iam_svc.domain.oauth import OAuthError, describable, invalid_request
from iam_svc.logic import metrics
from iam_svc.logic.provider import Provider

__all__ = ["AUTH_METHODS", "FormRequest", "OAuthResponse", "OAuthServer"]

log = logging.getLogger("panda.iam.http")

# How clients authenticate, at every endpoint: a confidential client with its secret (HTTP Basic
# or the form), a public one with its client_id alone.
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True)
class OAuthResponse:
    """What the HTTP edge sends: a status, a body (a JSON object, or text), headers."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str:
        return next((value for name, value in self.headers if name.lower() == "location"), "")


class FormRequest(OAuth2Request):
    """A request as Authlib reads it: its parameters (the form of a POST, the query of a GET),
    each already given once and within its limits."""

    def __init__(self, method: str, url: str, headers: Mapping[str, str], params: Mapping[str, str]) -> None:
        super().__init__(method, url, headers=headers)
        self._params = dict(params)
        self.payload = BasicOAuth2Payload(self._params)

    @property
    def form(self) -> dict[str, str]:
        return self._params

    @property
    def args(self) -> dict[str, str]:
        return self._params


class ClientModel(ClientMixin):
    """A client as Authlib asks about it."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def get_client_id(self) -> str:
        return self.client.client_id

    def get_default_redirect_uri(self) -> None:
        """None: an authorization request names its redirect URI (OpenID Connect requires it)."""
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        return tokens.grant_scope(scope, tokens.DEFAULT_USER_SCOPE)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exactly one of its registered redirect URIs (RFC 6749 §3.1.2.3, simple string comparison)."""
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        raise NotImplementedError("clients authenticate through OAuthServer's own methods")

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Whether the method fits the client was decided when it authenticated (_authenticated)."""
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and oauth.AUTHORIZATION_CODE in self.client.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.client.grant_types


class CodeModel:
    """An authorization code as Authlib (and its PKCE extension) asks about it."""

    def __init__(self, code: str, record: AuthorizationCode) -> None:
        self.code = code
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = record.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope


# --- client authentication -------------------------------------------------------------------


def _basic_credentials(request: FormRequest) -> tuple[str, str] | None:
    """(client_id, secret) of an HTTP Basic header (RFC 6749 §2.3.1: each form-encoded first),
    None without one; invalid_client when it is malformed."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() != "basic ":
        return None
    check_text("the Authorization header", header, form_fields.BASIC_AUTHORIZATION)
    if "client_secret" in request.form:
        raise invalid_request("use one client authentication method, not Basic and client_secret both")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as error:
        raise oauth.invalid_client("malformed Basic authorization header") from error
    raw_id, separator, raw_secret = decoded.partition(":")
    if not separator:
        raise oauth.invalid_client("malformed Basic authorization header")
    client_id = check_text("client_id", unquote_plus(raw_id), form_fields.TOKEN_FIELDS["client_id"])
    secret = check_text("client_secret", unquote_plus(raw_secret), form_fields.TOKEN_FIELDS["client_secret"])
    if request.form.get("client_id") not in (None, client_id):
        raise invalid_request("client_id differs from the authenticated client")
    return client_id, secret


def _authenticated(query_client: Any, client_id: str, secret: str | None) -> ClientModel:
    """The client, if it is who it says (accounts.authenticate_client): every failure reads the
    same, so nothing is learnt about which clients exist."""
    found = query_client(client_id)
    return ClientModel(accounts.authenticate_client(found.client if found else None, client_id, secret))


def _client_secret_basic(query_client: Any, request: FormRequest) -> ClientModel | None:
    credentials = _basic_credentials(request)
    return None if credentials is None else _authenticated(query_client, *credentials)


def _client_secret_post(query_client: Any, request: FormRequest) -> ClientModel | None:
    if "client_secret" not in request.form or _basic_credentials(request) is not None:
        return None
    return _authenticated(query_client, request.form.get("client_id") or "", request.form["client_secret"])


def _none(query_client: Any, request: FormRequest) -> ClientModel | None:
    client_id = request.form.get("client_id")
    if not client_id or "client_secret" in request.form or _basic_credentials(request) is not None:
        return None
    return _authenticated(query_client, client_id, None)


class _ClientAuthentication(ClientAuthentication):
    """Authlib's registry of the three methods, each ours (_authenticated); a request that
    uses none of them is told what to send."""

    def __init__(self, query_client: Any) -> None:
        super().__init__(query_client)
        self.register("client_secret_basic", _client_secret_basic)
        self.register("client_secret_post", _client_secret_post)
        self.register("none", _none)

    def authenticate(self, request: FormRequest, methods: list[str], endpoint: str) -> ClientModel:
        try:
            return super().authenticate(request, methods, endpoint)
        except InvalidClientError:
            raise oauth.invalid_client(
                "no client authentication: send client_id (and client_secret, or HTTP Basic)") from None


# --- grants --------------------------------------------------------------------------------


def _check_grant(grant: BaseGrant, client: ClientModel) -> None:
    accounts.check_grant(client.client, grant.GRANT_TYPE)
    grant.request.client = client


class _ClientCredentials(rfc6749_grants.ClientCredentialsGrant):
    """A robot's own token (RFC 6749 §4.4)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        _check_grant(self, self.authenticate_token_endpoint_client())

    @hooked
    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        body = self.server.provider.client_credentials(self.client.client, self.request.payload.scope)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _DeviceCode(BaseGrant, TokenEndpointMixin):
    """A device's poll (RFC 8628 §3.4): the provider's one transaction decides and records it,
    so it is not split into Authlib's DeviceCodeGrant steps."""

    GRANT_TYPE = oauth.DEVICE_CODE
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        _check_grant(self, self.authenticate_token_endpoint_client())

    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        body = self.server.provider.poll_device(self.client.client, self.request.form.get("device_code"))
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _RefreshToken(rfc6749_grants.RefreshTokenGrant):
    """A refresh (RFC 6749 §6), rotated in the provider's one transaction (domain.refresh)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        _check_grant(self, self.authenticate_token_endpoint_client())

    @hooked
    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        body = self.server.provider.refresh(self.client.client, self.request.form.get("refresh_token"),
                                            self.request.payload.scope)
        return 200, body, self.TOKEN_RESPONSE_HEADER


class _S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636), S256 only and required of every client: the authorization request must
    carry a challenge, and the token request the verifier that hashes to it."""

    DEFAULT_CODE_CHALLENGE_METHOD = authorization.CODE_CHALLENGE_METHOD
    SUPPORTED_CODE_CHALLENGE_METHOD = [authorization.CODE_CHALLENGE_METHOD]

    def __init__(self) -> None:
        super().__init__(required=True)

    def validate_code_challenge(self, grant: BaseGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        authorization.check_code_challenge(data.get("code_challenge"), data.get("code_challenge_method"))


class _AuthorizationCode(rfc6749_grants.AuthorizationCodeGrant):
    """The authorization code grant (RFC 6749 §4.1) with PKCE (_S256CodeChallenge) and OpenID
    Connect's nonce: Authlib validates the requests, the provider keeps and spends the codes."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def __init__(self, request: FormRequest, server: OAuthServer) -> None:
        super().__init__(request, server)
        self.register_hook("after_validate_authorization_request_payload", _check_openid_parameters)

    @staticmethod
    def validate_authorization_redirect_uri(request: FormRequest, client: ClientModel) -> str:
        """One of the client's registered URIs, exactly; otherwise the person sees an error page
        and is sent nowhere (no redirect_uri on the error)."""
        redirect_uri = request.payload.redirect_uri
        if not redirect_uri:
            raise invalid_request("redirect_uri is missing")
        if not client.check_redirect_uri(redirect_uri):
            raise invalid_request(f"redirect_uri {redirect_uri} is not registered for client "
                                  f"{client.get_client_id()}")
        return str(redirect_uri)

    def generate_authorization_code(self) -> str:
        return codes.new_authorization_code()

    def save_authorization_code(self, code: str, request: FormRequest) -> None:
        data = request.payload.data
        self.server.provider.save_authorization_code(
            code, request.client.client, redirect_uri=request.payload.redirect_uri, user=request.user,
            scope=request.scope, code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"], nonce=data.get("nonce") or "",
            auth_time=datetime.now(UTC))

    def query_authorization_code(self, code: str, client: ClientModel) -> CodeModel:
        check_text("code", code, form_fields.TOKEN_FIELDS["code"])
        return CodeModel(code, self.server.provider.authorization_code(client.client, code))

    @hooked
    def create_token_response(self) -> tuple[int, Any, list[tuple[str, str]]]:
        provider: Provider = self.server.provider
        client: Client = self.request.client.client
        redeemed = provider.redeem_authorization_code(client, self.request.authorization_code.code)
        body = provider.code_tokens(client, redeemed, refresh=oauth.REFRESH_TOKEN in client.grant_types)
        return 200, body, self.TOKEN_RESPONSE_HEADER


def _check_openid_parameters(grant: _AuthorizationCode, redirect_uri: str) -> None:
    """OpenID Connect's parameters: the state and nonce the client gets back, of bounded length;
    `prompt=none` asks for a sign-in without showing a page, which a provider without sessions
    cannot give (login_required)."""
    data = grant.request.payload.data
    authorization.check_authorization_extras(data.get("state"), data.get("nonce"))
    if "none" in (data.get("prompt") or "").split():
        raise OAuthError("login_required", "the person must sign in on the page (prompt=none is not possible)")


# --- other endpoints -------------------------------------------------------------------------


class _DeviceAuthorization(DeviceAuthorizationEndpoint):
    """Starting a device sign-in (RFC 8628 §3.1-3.2)."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def create_endpoint_response(self, request: FormRequest) -> tuple[int, Any, list[tuple[str, str]]]:
        client: ClientModel = self.authenticate_client(request)
        body = self.server.provider.start_device_authorization(client.client, request.payload.scope)
        return 200, body, default_json_headers


class _Revocation(RevocationEndpoint):
    """Ending a sign-in (RFC 7009). A token unknown, or another client's, is not an error: the
    answer tells nothing about which tokens exist."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def create_endpoint_response(self, request: FormRequest) -> tuple[int, Any, list[tuple[str, str]]]:
        client: ClientModel = self.authenticate_endpoint_client(request)
        self.server.provider.revoke(client.client, request.form.get("token"))
        return 200, {}, default_json_headers


# --- the server ----------------------------------------------------------------------------


class OAuthServer(AuthorizationServer):
    """Authlib's authorization server over the provider. Every method runs synchronously (on a
    database thread): the HTTP edge hands it a FormRequest and sends the OAuthResponse back."""

    def __init__(self, provider: Provider) -> None:
        super().__init__(scopes_supported=list(tokens.SUPPORTED_SCOPES))
        self.provider = provider
        self._client_auth = _ClientAuthentication(self.query_client)
        self.register_grant(_AuthorizationCode, [_S256CodeChallenge()])
        self.register_grant(_ClientCredentials)
        self.register_grant(_DeviceCode)
        self.register_grant(_RefreshToken)
        self.register_endpoint(_DeviceAuthorization)
        self.register_endpoint(_Revocation)

    # --- what Authlib asks of its integration -------------------------------------------

    def query_client(self, client_id: str) -> ClientModel | None:
        """An enabled client; a disabled one is as unknown."""
        found = self.provider.find_client(client_id) if client_id else None
        return ClientModel(found) if found is not None and found.enabled else None

    def save_token(self, token: dict[str, Any], request: FormRequest) -> None:
        """Nothing: the provider keeps what it must (refresh tokens) as it issues them."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signals are listened to."""

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> OAuthResponse:
        return OAuthResponse(int(status), body, list(headers))

    def validate_requested_scope(self, scope: str | None) -> None:
        tokens.grant_scope(scope, "")

    # --- dispatch with the provider's words --------------------------------------------

    def get_token_grant(self, request: FormRequest) -> BaseGrant:
        grant_type = request.payload.grant_type or ""
        if not grant_type:
            raise invalid_request("grant_type is missing")
        if grant_type not in oauth.GRANT_TYPES:
            raise OAuthError("unsupported_grant_type",
                             f"grant type {grant_type!r} is not offered (offered: {', '.join(oauth.GRANT_TYPES)})")
        return super().get_token_grant(request)

    def get_authorization_grant(self, request: FormRequest) -> BaseGrant:
        response_type = request.payload.response_type or ""
        if response_type != "code":
            error = OAuthError("unsupported_response_type",
                               f"response_type {response_type!r} is not offered (offered: code)"
                               if response_type else "response_type is missing (offered: code)")
            error.redirect_uri = self._verified_redirect(request)
            raise error
        return super().get_authorization_grant(request)

    def _verified_redirect(self, request: FormRequest) -> str | None:
        """The request's redirect URI when it is one of its client's (RFC 6749 §4.1.2.1: an
        error goes back to the client only then)."""
        client = self.query_client(request.payload.client_id or "")
        uri = request.payload.redirect_uri
        return uri if client is not None and uri and client.check_redirect_uri(uri) else None

    def create_token_response(self, request: FormRequest) -> OAuthResponse:
        """The token endpoint; a response with tokens counts under its grant."""
        try:
            grant = self.get_token_grant(request)
        except OAuth2Error as error:
            return self.handle_error_response(request, error)
        try:
            grant.validate_token_request()
            response: OAuthResponse = self.handle_response(*grant.create_token_response())
        except OAuth2Error as error:
            return self.handle_error_response(request, error)
        metrics.token_issued(grant.GRANT_TYPE)
        return response

    def handle_error_response(self, request: FormRequest, error: OAuth2Error) -> OAuthResponse:
        """Every refusal goes out here (a JSON body, or a redirect back to the client), counted
        by its reason when it refuses someone's identity."""
        reason = metrics.refusal_reason(error, request.payload.grant_type or "")
        if reason is not None:
            metrics.sign_in_failed(reason)
        return super().handle_error_response(request, error)

    def error_response(self, request: FormRequest, error: OAuth2Error) -> OAuthResponse:
        """A refusal raised before Authlib saw the request (a field over its limit, a throttle)."""
        return self.handle_error_response(request, error)

    # --- the authorization endpoint ----------------------------------------------------

    def validate_authorization_request(self, request: FormRequest) -> BaseGrant:
        """The grant of a valid authorization request; OAuth2Error otherwise, carrying the
        redirect URI when the error is to go back to the client (its redirect URI verified),
        none when the person is to see it."""
        return self.get_consent_grant(request)

    def authorization_response(self, request: FormRequest, grant: BaseGrant, user: User | None) -> OAuthResponse:
        """Back to the client: with a code for `user`, or access_denied when None."""
        return self.create_authorization_response(request, grant_user=user, grant=grant)


def error_text(error: OAuth2Error) -> str:
    """What a person reads of an OAuth error."""
    return describable(str(error.description or error.error))
