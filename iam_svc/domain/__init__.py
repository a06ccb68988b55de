"""The identity service's rules and types, without I/O: accounts and clients (who authenticates,
which grants), device codes, refresh tokens, signing keys, token claims and scope, lifetimes,
names, passwords and the sign-in throttle."""

__all__ = ["accounts", "codes", "device", "keys", "lifetimes", "names", "oauth", "passwords", "refresh",
           "throttle", "tokens"]
