"""The identity service's orchestration: the OAuth/OIDC provider over the stores, provisioning
(defaults, people, robots, tokens without a browser), and the token check renewed on key rotation."""

__all__ = ["provider", "provisioning", "renewable_auth"]
