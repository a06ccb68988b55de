"""The identity service's own token check: its own tokens are verified against the keys in its
database (no HTTP round trip to itself, and a key rotated a moment ago is known at once);
tokens of other trusted issuers go to the shared check."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import jwt

from iam_svc.domain.oauth import OAuthError
from iam_svc.provider import Provider
from panda_runtime.auth import Authenticator, Principal, bearer_token, principal_from_claims
from panda_runtime.db import DbRunner
from panda_runtime.errors import Unauthenticated


class OwnTokensFirst:
    def __init__(self, db: DbRunner, provider: Provider, others: Authenticator) -> None:
        self._db = db
        self._provider = provider
        self._others = others

    async def authenticate(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], context: grpc.aio.ServicerContext | None
    ) -> Principal:
        token = bearer_token(metadata)
        if token is None or not self._is_own(token):
            return await self._others.authenticate(method, metadata, context)
        try:
            claims = await self._db.run(self._provider.verify_access_token, token)
        except OAuthError as error:
            raise Unauthenticated(f"token refused: {error.description}") from error
        return principal_from_claims(claims)

    def _is_own(self, token: str) -> bool:
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
        except jwt.PyJWTError:
            return False
        return str(issuer).rstrip("/") == self._provider.issuer

    async def close(self) -> None:
        close = getattr(self._others, "close", None)
        if close is not None:
            await close()
