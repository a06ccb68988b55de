"""Waking waiters inside one process, e.g. watch streams after events were written."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Notifier"]


class Notifier:
    """Wakes every waiter once per notify; waiters also give up after a timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
