"""The identity service: an OIDC/OAuth2 provider (discovery, JWKS, token, device flow,
userinfo) over HTTP, and its administration (users, groups, clients, keys) over gRPC.

Whoever starts it or provisions its database (`panda up`, the test clusters, the benchmarks)
uses `iam_svc.main` (its `__all__`) and `iam_svc.settings`, nothing else. This package imports
neither, so reading the settings does not load the database layer."""
