"""The device authorization grant (RFC 8628): what a poll of the token endpoint answers,
from the code's state and the client's pace. No I/O."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
# Approved, and its tokens already handed out: a device code is good for one set of tokens.
CONSUMED = "consumed"

# RFC 8628 §3.5: on slow_down the interval grows by 5 seconds for this and later polls.
SLOW_DOWN_STEP_SECONDS = 5
# A poll a little early (timers, network) is tolerated; one well ahead is slowed down.
EARLY_POLL_TOLERANCE = 0.8


class PollResult(Enum):
    PENDING = "authorization_pending"
    SLOW_DOWN = "slow_down"
    DENIED = "access_denied"
    EXPIRED = "expired_token"
    APPROVED = "approved"
    ALREADY_USED = "already_used"


def poll_result(
    state: str, *, now: datetime, expire_time: datetime, last_poll_time: datetime | None, interval: int
) -> PollResult:
    if state == CONSUMED:
        return PollResult.ALREADY_USED
    if now >= expire_time:
        return PollResult.EXPIRED
    if state == DENIED:
        return PollResult.DENIED
    if state == APPROVED:
        return PollResult.APPROVED
    if last_poll_time is not None and (now - last_poll_time).total_seconds() < interval * EARLY_POLL_TOLERANCE:
        return PollResult.SLOW_DOWN
    return PollResult.PENDING
