"""OAuth 2.0 errors (RFC 6749 §4.1.2.1 and §5.2, RFC 8628 §3.5) as the provider's endpoints
return them, and the grant types the provider speaks.

OAuthError is an Authlib OAuth2Error, so that the provider's own refusals and the library's go
out one way (the authorization server's error response: a JSON body at the token endpoints, a
redirect back to the client at the authorization endpoint once the client and its redirect URI
are known). Its description is kept to the characters RFC 6749 allows in `error_description`."""

from __future__ import annotations

from authlib.oauth2.rfc6749.errors import OAuth2Error

__all__ = [
    "AUTHORIZATION_CODE", "CLIENT_CREDENTIALS", "CONFIDENTIAL_DEFAULT_GRANTS", "DEVICE_CODE", "GRANT_TYPES",
    "GRANT_TYPE_ALIASES", "PUBLIC_DEFAULT_GRANTS", "REDIRECT_DEFAULT_GRANTS", "REFRESH_TOKEN", "OAuthError",
    "access_denied", "describable", "invalid_client", "invalid_grant", "invalid_request", "too_many_requests",
]

AUTHORIZATION_CODE = "authorization_code"
CLIENT_CREDENTIALS = "client_credentials"
DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
REFRESH_TOKEN = "refresh_token"
GRANT_TYPES = (AUTHORIZATION_CODE, CLIENT_CREDENTIALS, DEVICE_CODE, REFRESH_TOKEN)
# Short names people may type for the long URN.
GRANT_TYPE_ALIASES = {"device_code": DEVICE_CODE, "device": DEVICE_CODE, "code": AUTHORIZATION_CODE}

CONFIDENTIAL_DEFAULT_GRANTS = (CLIENT_CREDENTIALS,)
PUBLIC_DEFAULT_GRANTS = (DEVICE_CODE, REFRESH_TOKEN)
# A public client that names redirect URIs signs people in through the browser.
REDIRECT_DEFAULT_GRANTS = (AUTHORIZATION_CODE, REFRESH_TOKEN)


def describable(text: str) -> str:
    """`text` as an error_description may carry it: printable ASCII but '"' and '\\' (RFC 6749
    §5.2); anything else (a request's own bytes quoted back) becomes '?'."""
    return "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "?" for ch in text)


class OAuthError(OAuth2Error):  # type: ignore[misc]  # Authlib is untyped
    """An OAuth error response: `error`, a description for people, and the HTTP status (400,
    401 for a client that failed to authenticate or a bearer token refused, 429 for one that
    must wait `retry_after` seconds)."""

    def __init__(self, error: str, description: str, status: int = 400, retry_after: int = 0) -> None:
        super().__init__(description=describable(description), status_code=status, error=error)
        self.retry_after = retry_after

    @property
    def status(self) -> int:
        return int(self.status_code)

    def body(self) -> dict[str, str]:
        return {"error": str(self.error), "error_description": str(self.description)}

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = list(super().get_headers())
        if self.status_code == 401:
            if self.error == "invalid_token":
                headers.append(("WWW-Authenticate",
                                f'Bearer error="invalid_token", error_description="{self.description}"'))
            else:
                headers.append(("WWW-Authenticate", 'Basic realm="panda-mesh"'))
        if self.retry_after:
            headers.append(("Retry-After", str(self.retry_after)))
        return headers


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def access_denied(description: str) -> OAuthError:
    return OAuthError("access_denied", description)


def too_many_requests(description: str, retry_after: int) -> OAuthError:
    """A client going too fast: 429 with Retry-After, and RFC 8628's `slow_down`, which device
    clients already know to mean "wait, then try again"."""
    return OAuthError("slow_down", description, 429, retry_after)
