"""The device authorization grant (RFC 8628): what a poll of the token endpoint answers, from
the code's state and the client's pace, what the poll changes, and whether the person at the
verification page may still approve or deny. No I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TypedDict

from iam_svc.domain.oauth import OAuthError

__all__ = [
    "APPROVED",
    "CONSUMED",
    "DENIED",
    "PENDING",
    "SLOW_DOWN_STEP_SECONDS",
    "Decision",
    "DeviceAuthorization",
    "DeviceCode",
    "PollResult",
    "after_poll",
    "authorization_response",
    "decide",
    "poll",
    "poll_error",
    "poll_result",
]

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
# Approved, and its tokens already handed out: a device code is good for one set of tokens.
CONSUMED = "consumed"

# RFC 8628 §3.5: on slow_down the interval grows by 5 seconds for this and later polls.
SLOW_DOWN_STEP_SECONDS = 5
# A poll a little early (timers, network) is tolerated; one well ahead is slowed down.
EARLY_POLL_TOLERANCE = 0.8


@dataclass(frozen=True, slots=True)
class DeviceCode:
    """A device code as stored (the code itself only as its digest, which this does not carry)."""

    user_code: str
    client_id: str
    scope: str
    # PENDING → APPROVED | DENIED; APPROVED → CONSUMED once the client took its tokens.
    state: str
    # The user who approved or denied.
    user_name: str
    create_time: datetime
    expire_time: datetime
    # The interval the client must keep (it grows on slow_down), and its last poll.
    poll_interval: int
    last_poll_time: datetime | None


class PollResult(Enum):
    PENDING = "authorization_pending"
    SLOW_DOWN = "slow_down"
    DENIED = "access_denied"
    EXPIRED = "expired_token"
    APPROVED = "approved"
    ALREADY_USED = "already_used"


class Decision(Enum):
    """What became of a person's approval or denial at the verification page."""

    DONE = "done"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"


class DeviceAuthorization(TypedDict):
    """RFC 8628 §3.2: the device authorization response."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


def authorization_response(
    *, issuer: str, device_code: str, user_code: str, expires_in: int, interval: int
) -> DeviceAuthorization:
    verification_uri = f"{issuer}/device"
    return {
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": f"{verification_uri}?user_code={user_code}",
        "expires_in": expires_in,
        "interval": interval,
    }


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


def poll(code: DeviceCode | None, client_id: str, now: datetime) -> PollResult | None:
    """One poll by `client_id`; None for an unknown code or one issued to another client, which
    the client cannot tell apart."""
    if code is None or code.client_id != client_id:
        return None
    return poll_result(code.state, now=now, expire_time=code.expire_time, last_poll_time=code.last_poll_time,
                       interval=code.poll_interval)


def after_poll(code: DeviceCode, result: PollResult, now: datetime) -> DeviceCode:
    """The code as the poll leaves it: polled now; slowed down by a step if it came too early;
    consumed by the poll that sees it approved."""
    if result is PollResult.SLOW_DOWN:
        return dataclasses.replace(code, last_poll_time=now, poll_interval=code.poll_interval + SLOW_DOWN_STEP_SECONDS)
    if result is PollResult.APPROVED:
        return dataclasses.replace(code, last_poll_time=now, state=CONSUMED)
    return dataclasses.replace(code, last_poll_time=now)


_WAITING = {
    PollResult.PENDING: "the user has not approved or denied yet",
    PollResult.DENIED: "the user denied the sign-in",
    PollResult.EXPIRED: "the device code has expired: start again",
    PollResult.ALREADY_USED: "the device code was already exchanged for tokens",
}


def poll_error(result: PollResult, interval: int) -> OAuthError:
    """The token endpoint's answer to a poll that gets no tokens (RFC 8628 §3.5)."""
    if result is PollResult.SLOW_DOWN:
        return OAuthError(result.value, f"polling too fast: wait {interval} s between polls")
    if result is PollResult.APPROVED:
        raise ValueError("an approved code gets its tokens")
    error = "invalid_grant" if result is PollResult.ALREADY_USED else result.value
    return OAuthError(error, _WAITING[result])


def decide(code: DeviceCode | None, now: datetime) -> Decision:
    """Whether the person may still approve or deny the code: it exists, has not expired, and
    nobody decided it yet."""
    if code is None:
        return Decision.UNKNOWN
    if code.expire_time <= now:
        return Decision.EXPIRED
    if code.state != PENDING:
        return Decision.ALREADY_DECIDED
    return Decision.DONE
