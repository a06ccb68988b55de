"""Where JEDI is in the server's job event stream. A transaction at the server that took a
cursor before another but committed after it shows up late, so a cursor skipped by the
stream is remembered as missing and looked for again, until GIVE_UP_SECONDS have passed
(then it is taken as rolled back); JEDI resumes from before the oldest cursor still missing.
No I/O: times are given (monotonic seconds)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["GIVE_UP_SECONDS", "MAX_GAP", "CursorGaps"]

GIVE_UP_SECONDS = 30.0
# A jump this large is no gap of late commits (e.g. the server's log started anew).
MAX_GAP = 10_000


class CursorGaps:
    def __init__(self, last_seen: int = 0) -> None:
        self.last_seen = last_seen
        # Missing cursor -> when it was first missed.
        self.missing: dict[int, float] = {}

    def seen(self, cursors: Iterable[int], at: float) -> None:
        """Cursors the stream delivered, in order: each fills its gap, or opens one."""
        previous = self.last_seen
        for cursor in cursors:
            self.missing.pop(cursor, None)
            if previous and previous + 1 < cursor < previous + MAX_GAP:
                for skipped in range(previous + 1, cursor):
                    self.missing.setdefault(skipped, at)
            previous = max(previous, cursor)
        self.last_seen = previous

    def give_up(self, at: float) -> None:
        """Forget the cursors missing for longer than GIVE_UP_SECONDS."""
        for cursor in [c for c, since in self.missing.items() if at - since > GIVE_UP_SECONDS]:
            del self.missing[cursor]

    def safe_cursor(self) -> int:
        """Where to resume after a restart: before the oldest cursor still missing."""
        return min(self.missing) - 1 if self.missing else self.last_seen
