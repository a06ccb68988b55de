"""How fast a client may sign people in (the device page and the authorization endpoint's sign-in
page): sign-in failures are counted by the client's address (on both pages together) and by the
device code they were made with, never by the account alone, so a stranger who
hammers an account only throttles themselves; guesses of user codes and new device sign-ins are
limited per address. Counters live in memory: each identity service process keeps its own.

Every limit is "at most N events per key within a sliding window"; when it is reached, the
next event is refused until the oldest counted one leaves the window (that wait is the
Retry-After). Refused attempts are not counted, so a client that stops is free again one window
after its last counted event."""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Limit", "Refusal", "SignInThrottle", "SlidingWindow", "ThrottleLimits", "Throttled", "client_key"]

# Keys each window tracks at most; the least recently counted are forgotten first.
MAX_TRACKED = 10_000
# IPv6 hands a site (or one attacker) a /64 at least: counting its addresses one by one would
# let it step around every limit.
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_seconds: float


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    # Wrong passwords (or unknown user names) from one address, whichever accounts they were for.
    sign_in_failures_per_address: Limit = Limit(10, 600)
    # Wrong passwords entered with one device code (the person starts a new `panda login` after).
    sign_in_failures_per_code: Limit = Limit(5, 600)
    # Codes entered on the device page that no device sign-in holds.
    user_code_misses_per_address: Limit = Limit(10, 600)
    # Device sign-ins started (/device_authorization) from one address.
    device_starts_per_address: Limit = Limit(30, 600)


class SlidingWindow:
    """At most `limit.count` events per key within `limit.window_seconds`."""

    def __init__(self, limit: Limit, max_tracked: int = MAX_TRACKED) -> None:
        self.limit = limit
        self._max_tracked = max_tracked
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._events.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.limit.window_seconds:
            times.popleft()
        if not times:
            del self._events[key]
            return None
        return times

    def retry_after(self, key: str, now: float) -> float | None:
        """Seconds until `key` may act again; None when it may now."""
        times = self._recent(key, now)
        if times is None or len(times) < self.limit.count:
            return None
        return times[0] + self.limit.window_seconds - now

    def count(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = self._events[key] = deque(maxlen=self.limit.count)
        times.append(now)
        self._events.move_to_end(key)
        while len(self._events) > self._max_tracked:
            self._events.popitem(last=False)

    def take(self, key: str, now: float) -> float | None:
        """Counts an event of `key` if it may act now (None); otherwise the wait, uncounted."""
        wait = self.retry_after(key, now)
        if wait is None:
            self.count(key, now)
        return wait


class Throttled(Enum):
    SIGN_IN_FAILURES = "too many failed sign-ins from this address"
    CODE_FAILURES = "too many failed sign-ins with this code"
    USER_CODE_MISSES = "too many unknown codes entered from this address"
    DEVICE_STARTS = "too many device sign-ins started from this address"


@dataclass(frozen=True, slots=True)
class Refusal:
    why: Throttled
    retry_after: float

    @property
    def retry_after_seconds(self) -> int:
        """The Retry-After header's whole seconds (at least 1)."""
        return max(1, math.ceil(self.retry_after))


@dataclass
class SignInThrottle:
    """The sign-in limits, keyed by client address (`client_key`) and device code."""

    limits: ThrottleLimits = field(default_factory=ThrottleLimits)

    def __post_init__(self) -> None:
        self._failures_by_address = SlidingWindow(self.limits.sign_in_failures_per_address)
        self._failures_by_code = SlidingWindow(self.limits.sign_in_failures_per_code)
        self._misses_by_address = SlidingWindow(self.limits.user_code_misses_per_address)
        self._starts_by_address = SlidingWindow(self.limits.device_starts_per_address)

    def before_code(self, address: str, now: float) -> Refusal | None:
        """May this address enter a code and a password on the device page now? Refused while
        it has too many failures or unknown codes counted against it."""
        for window, why in ((self._failures_by_address, Throttled.SIGN_IN_FAILURES),
                            (self._misses_by_address, Throttled.USER_CODE_MISSES)):
            wait = window.retry_after(address, now)
            if wait is not None:
                return Refusal(why, wait)
        return None

    def before_sign_in(self, address: str, now: float) -> Refusal | None:
        """May this address try a password on the authorization endpoint's sign-in page now?
        Refused while it has too many failures counted against it, on either page."""
        wait = self._failures_by_address.retry_after(address, now)
        return None if wait is None else Refusal(Throttled.SIGN_IN_FAILURES, wait)

    def password_failed(self, address: str, now: float) -> None:
        """A wrong password on the authorization endpoint's sign-in page: counted against the
        address, never the account."""
        self._failures_by_address.count(address, now)

    def before_password(self, user_code: str, now: float) -> Refusal | None:
        """May a password be tried with this (existing) device code now?"""
        wait = self._failures_by_code.retry_after(user_code, now)
        return None if wait is None else Refusal(Throttled.CODE_FAILURES, wait)

    def unknown_code(self, address: str, now: float) -> None:
        self._misses_by_address.count(address, now)

    def sign_in_failed(self, address: str, user_code: str, now: float) -> None:
        """A wrong password: counted against the address and the code, never the account. A
        success clears nothing, or signing in to one's own account would wipe the count of
        guesses at another's."""
        self._failures_by_address.count(address, now)
        self._failures_by_code.count(user_code, now)

    def device_start(self, address: str, now: float) -> Refusal | None:
        """Counts a new device sign-in from this address, or refuses it."""
        wait = self._starts_by_address.take(address, now)
        return None if wait is None else Refusal(Throttled.DEVICE_STARTS, wait)


def client_key(host: str | None) -> str:
    """The key a client's address is counted under: the address itself (IPv4, or IPv4 mapped
    into IPv6), or its /64 network for IPv6."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)
