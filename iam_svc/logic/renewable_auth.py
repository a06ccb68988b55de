"""The identity service's own token check: the shared one (panda_runtime.service.auth), made anew when
this service rotates its signing key. The shared check refetches an issuer's keys at most every
PANDA_AUTH_JWKS_MIN_REFRESH_SECONDS, so without this a token of the new key could be refused
here for those seconds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from panda_runtime.service.auth import Authenticator
from panda_runtime.service.principals import Principal

__all__ = ["RenewableAuthenticator"]

# Calls that began with the previous check may still be using it for this long.
RETIRE_AFTER_SECONDS = 30.0


class RenewableAuthenticator:
    def __init__(self, make: Callable[[], Authenticator]) -> None:
        self._make = make
        self._current = make()
        self._retiring: set[asyncio.Task[None]] = set()

    async def authenticate(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]],
        context: grpc.aio.ServicerContext[Any, Any] | None,
    ) -> Principal:
        return await self._current.authenticate(method, metadata, context)

    async def renew(self) -> None:
        previous, self._current = self._current, self._make()
        task = asyncio.create_task(self._close_later(previous))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _close_later(authenticator: Authenticator) -> None:
        await asyncio.sleep(RETIRE_AFTER_SECONDS)
        await _close(authenticator)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await _close(self._current)


async def _close(authenticator: Authenticator) -> None:
    close = getattr(authenticator, "close", None)
    if close is not None:
        await close()
