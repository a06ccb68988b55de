"""The identity service's own metrics: tokens issued by grant, and sign-ins it refused by
reason. (Its HTTP endpoints are counted by the shared HTTP middleware, its gRPC calls and token
check by the shared interceptors.)"""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import OAuth2Error
from prometheus_client import Counter

from iam_svc.domain import oauth

__all__ = ["GRANTS", "SIGN_IN_FAILURES", "SIGN_IN_FAILURE_REASONS", "TOKENS_ISSUED", "grant_label",
           "refusal_reason", "sign_in_failed", "token_issued"]

# The grant label: the grant types' short names.
GRANTS = {oauth.AUTHORIZATION_CODE: "authorization_code", oauth.CLIENT_CREDENTIALS: "client_credentials",
          oauth.DEVICE_CODE: "device_code", oauth.REFRESH_TOKEN: "refresh_token"}
SIGN_IN_FAILURE_REASONS = (
    "client",  # a client's id or secret refused, or a grant it may not use
    "password",  # a person's name or password refused on a sign-in page (device or authorization)
    "device_code",  # a device code unknown, expired, denied or already used
    # an authorization code unknown, expired or reused, or its PKCE verifier or redirect URI wrong
    "authorization_code",
    "refresh_token",  # a refresh token unknown, expired, revoked or spent
    "access_token",  # userinfo with a missing, expired or revoked access token
    "throttled",  # too many attempts: told to slow down or wait
)

TOKENS_ISSUED = Counter("panda_iam_tokens_issued_total", "Token responses the identity service issued, by grant.",
                        ["grant"])
SIGN_IN_FAILURES = Counter("panda_iam_sign_in_failures_total",
                           "Sign-ins and token requests the identity service refused, by reason.", ["reason"])
for _grant in GRANTS.values():
    TOKENS_ISSUED.labels(_grant)
for _reason in SIGN_IN_FAILURE_REASONS:
    SIGN_IN_FAILURES.labels(_reason)


def grant_label(grant_type: str) -> str:
    return GRANTS.get(grant_type, "other")


def token_issued(grant_type: str) -> None:
    TOKENS_ISSUED.labels(grant_label(grant_type)).inc()


def sign_in_failed(reason: str) -> None:
    SIGN_IN_FAILURES.labels(reason).inc()


def refusal_reason(error: OAuth2Error, grant_type: str = "") -> str | None:
    """The reason an OAuth error response counts under, or None for one that is no refusal of
    anyone's identity: a malformed request, or a device code still waiting for its person."""
    if error.status_code == 429 or error.error == "slow_down":
        return "throttled"
    if error.error in ("invalid_client", "unauthorized_client"):
        return "client"
    if error.error == "invalid_token":
        return "access_token"
    if grant_type == oauth.DEVICE_CODE and error.error in ("invalid_grant", "expired_token", "access_denied"):
        return "device_code"
    if grant_type == oauth.REFRESH_TOKEN and error.error == "invalid_grant":
        return "refresh_token"
    if grant_type == oauth.AUTHORIZATION_CODE and error.error == "invalid_grant":
        return "authorization_code"
    return None
