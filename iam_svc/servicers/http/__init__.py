"""The OIDC edge over HTTP: the Starlette app (discovery, JWKS, token, device authorization,
revocation, userinfo, the device verification page), its forms and pages, and uvicorn serving it."""

__all__ = ["app", "forms", "pages", "server"]
