"""The identity service: an OIDC/OAuth2 provider (discovery, JWKS, token, device flow,
userinfo) over HTTP, and its administration (users, groups, clients, keys) over gRPC."""
