"""The identity service's tables and the repositories over them, returning the domain's records."""

__all__ = ["flow_store", "identity_store", "key_store", "tables"]
