"""Tables owned by the identity service (prefix `iam_`). Secrets are never stored as given:
passwords as argon2id hashes, client secrets, device codes, authorization codes and refresh
tokens as SHA-256 digests."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)

from panda_runtime.service.db import Id, Time, new_metadata

__all__ = [
    "authorization_codes", "clients", "device_codes", "groups", "memberships", "metadata", "refresh_tokens",
    "revocations", "signing_keys", "users",
]

metadata = new_metadata()

users = Table(
    "iam_users",
    metadata,
    Column("user_row", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False, default=""),
    Column("email", String(256), nullable=False, default=""),
    # argon2id hash (PHC string); empty: no password sign-in.
    Column("password_hash", String(256), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
)

groups = Table(
    "iam_groups",
    metadata,
    Column("group_row", Id, primary_key=True, autoincrement=True),
    # The WLCG path, e.g. "/panda/production".
    Column("path", String(256), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("create_time", Time, nullable=False),
)

memberships = Table(
    "iam_memberships",
    metadata,
    Column("user_row", Id, ForeignKey("iam_users.user_row", ondelete="CASCADE"), primary_key=True),
    Column("group_row", Id, ForeignKey("iam_groups.group_row", ondelete="CASCADE"), primary_key=True),
    Index("ix_iam_memberships_group", "group_row"),
)

clients = Table(
    "iam_clients",
    metadata,
    Column("client_row", Id, primary_key=True, autoincrement=True),
    Column("client_id", String(64), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("public", Boolean, nullable=False),
    # SHA-256 of the secret (hex); empty for public clients.
    Column("secret_hash", String(64), nullable=False, default=""),
    Column("grant_types", JSON, nullable=False),
    # The groups and queues of the client's own (client_credentials) tokens.
    Column("groups", JSON, nullable=False),
    Column("queues", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("create_time", Time, nullable=False),
    Column("update_time", Time, nullable=False),
    # Where the authorization endpoint may send a person back (authorization_code grant).
    Column("redirect_uris", JSON, nullable=False, default=list),
)

signing_keys = Table(
    "iam_signing_keys",
    metadata,
    Column("key_row", Id, primary_key=True, autoincrement=True),
    Column("kid", String(64), nullable=False, unique=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key_pem", Text, nullable=False),
    # "active" (exactly one) or "retired".
    Column("state", String(8), nullable=False),
    Column("create_time", Time, nullable=False),
    Column("retire_time", Time, nullable=True),
    # At most one active key, even when two processes start on an empty database together.
    Index(
        "ix_iam_signing_keys_one_active", "state", unique=True,
        sqlite_where=text("state = 'active'"), postgresql_where=text("state = 'active'"),
    ),
)

device_codes = Table(
    "iam_device_codes",
    metadata,
    Column("device_row", Id, primary_key=True, autoincrement=True),
    Column("device_code_hash", String(64), nullable=False, unique=True),
    # Shown to the person, e.g. "WDJB-MJHT"; unique among codes not yet expired.
    Column("user_code", String(16), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    # pending → approved | denied; approved → consumed once the client took its tokens.
    Column("state", String(10), nullable=False),
    # The user who approved or denied.
    Column("user_name", String(64), nullable=False, default=""),
    Column("create_time", Time, nullable=False),
    Column("expire_time", Time, nullable=False),
    # Polling: the interval the client must keep (grows on slow_down) and its last poll.
    Column("poll_interval", Integer, nullable=False),
    Column("last_poll_time", Time, nullable=True),
    Index("ix_iam_device_codes_user_code", "user_code"),
)

authorization_codes = Table(
    "iam_authorization_codes",
    metadata,
    Column("code_row", Id, primary_key=True, autoincrement=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    # What the code is bound to: the client, the exact redirect URI, the person, the PKCE
    # challenge (S256), and the scope and nonce the client asked for.
    Column("client_id", String(64), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    Column("nonce", Text, nullable=False, default=""),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    # The sign-in the code starts: its refresh tokens' family, and its tokens' `sid`.
    Column("family", String(32), nullable=False),
    # "issued", then "used" once exchanged (a code is good for one exchange).
    Column("state", String(8), nullable=False),
    # When the person signed in (the ID token's auth_time).
    Column("auth_time", Time, nullable=False),
    Column("create_time", Time, nullable=False),
    Column("expire_time", Time, nullable=False),
    Index("ix_iam_authorization_codes_expire_time", "expire_time"),
)

refresh_tokens = Table(
    "iam_refresh_tokens",
    metadata,
    Column("token_row", Id, primary_key=True, autoincrement=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    # Every token descending from one sign-in shares a family; a reused (already rotated)
    # token revokes the whole family, since either its holder or a thief has the newer one.
    Column("family", String(32), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("user_name", String(64), nullable=False),
    Column("scope", Text, nullable=False),
    # "active", "rotated" (exchanged for a newer one) or "revoked".
    Column("state", String(8), nullable=False),
    Column("create_time", Time, nullable=False),
    Column("expire_time", Time, nullable=False),
    Index("ix_iam_refresh_tokens_family", "family"),
    Index("ix_iam_refresh_tokens_user", "user_name"),
)

revocations = Table(
    "iam_revocations",
    metadata,
    Column("revocation_row", Id, primary_key=True, autoincrement=True),
    # "sub" (a user disabled or deleted) or "client_id" (a client deleted).
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    # Tokens of this subject or client issued at or before this moment are refused.
    Column("revoke_time", Time, nullable=False),
    Index("ix_iam_revocations_revoke_time", "revoke_time"),
)
