"""Slows down password guessing on the sign-in page: after too many failures for one account
within a window, that account's sign-in is refused until the window has passed."""

from __future__ import annotations

from collections import deque

__all__ = ["SignInThrottle"]

MAX_FAILURES = 10
WINDOW_SECONDS = 600.0
# Accounts tracked at most; the oldest are forgotten first.
MAX_TRACKED = 10_000


class SignInThrottle:
    def __init__(self, max_failures: int = MAX_FAILURES, window_seconds: float = WINDOW_SECONDS) -> None:
        self._max = max_failures
        self._window = window_seconds
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, account: str, now: float) -> deque[float]:
        times = self._failures.get(account, deque())
        while times and times[0] <= now - self._window:
            times.popleft()
        return times

    def blocked(self, account: str, now: float) -> bool:
        return len(self._recent(account, now)) >= self._max

    def failed(self, account: str, now: float) -> None:
        times = self._recent(account, now)
        times.append(now)
        self._failures.pop(account, None)
        self._failures[account] = times  # re-inserted: the dict's order is least recently failed first
        while len(self._failures) > MAX_TRACKED:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, account: str) -> None:
        self._failures.pop(account, None)
