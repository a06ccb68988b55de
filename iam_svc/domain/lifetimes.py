"""How long what the provider hands out lives, and how long it is kept once it has ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["KEEP_ENDED", "Lifetimes", "purge_before"]

# Ended device codes and refresh tokens are kept this long for the record, then deleted.
KEEP_ENDED = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Lifetimes:
    user_token_seconds: int
    robot_token_seconds: int
    refresh_token_seconds: int
    device_code_seconds: int
    device_poll_seconds: int
    # What a verifier forgives of clocks that differ.
    leeway_seconds: int

    @property
    def longest_token_seconds(self) -> int:
        """How long after a key retires a token it signed may still be accepted."""
        return max(self.user_token_seconds, self.robot_token_seconds) + self.leeway_seconds

    def token_seconds(self, robot: bool) -> int:
        """A robot's access token lives longer than a person's: services and pilots run for days."""
        return self.robot_token_seconds if robot else self.user_token_seconds


def purge_before(now: datetime) -> datetime:
    """Device codes and refresh tokens that expired before this moment are deleted."""
    return now - KEEP_ENDED
