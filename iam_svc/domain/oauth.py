"""OAuth 2.0 errors (RFC 6749 §5.2, RFC 8628 §3.5) as the token endpoints return them, and the
grant types the provider speaks."""

from __future__ import annotations

__all__ = [
    "CLIENT_CREDENTIALS", "CONFIDENTIAL_DEFAULT_GRANTS", "DEVICE_CODE", "GRANT_TYPES", "GRANT_TYPE_ALIASES",
    "PUBLIC_DEFAULT_GRANTS", "REFRESH_TOKEN", "OAuthError", "invalid_client", "invalid_grant", "invalid_request",
    "too_many_requests",
]

CLIENT_CREDENTIALS = "client_credentials"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN = "refresh_token"
GRANT_TYPES = (CLIENT_CREDENTIALS, DEVICE_CODE, REFRESH_TOKEN)
# Short names people may type for the long URN.
GRANT_TYPE_ALIASES = {"device_code": DEVICE_CODE, "device": DEVICE_CODE}

CONFIDENTIAL_DEFAULT_GRANTS = (CLIENT_CREDENTIALS,)
PUBLIC_DEFAULT_GRANTS = (DEVICE_CODE, REFRESH_TOKEN)


class OAuthError(Exception):
    """An error response of a token endpoint: `error`, a description for people, and the
    HTTP status (400, or 401 for a client that failed to authenticate, 429 for one that must
    wait `retry_after` seconds)."""

    def __init__(self, error: str, description: str, status: int = 400, retry_after: int = 0) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.retry_after = retry_after

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def too_many_requests(description: str, retry_after: int) -> OAuthError:
    """A client going too fast: 429 with Retry-After, and RFC 8628's `slow_down`, which device
    clients already know to mean "wait, then try again"."""
    return OAuthError("slow_down", description, 429, retry_after)
