"""Why and how a pilot leaves: the first reason to stop wins (refused by the server, a signal,
a soft kill from the server, the most jobs it may run), how long it keeps trying to deliver its
final updates, and the exit code it leaves with."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_REFUSED", "Departure"]

EXIT_OK = 0
EXIT_FAILURE = 1  # final updates left unacknowledged, or the server was never reached
EXIT_REFUSED = 2
# How long an exiting pilot keeps trying to deliver final updates (after a signal: less, since
# the batch system's SIGKILL usually follows within a minute or two).
EXIT_DELIVERY_SECONDS = 300.0
SIGNAL_EXIT_DELIVERY_SECONDS = 30.0


@dataclass
class Departure:
    signal: int | None = None
    signal_time: float = 0.0
    soft_kill: bool = False
    refused: str | None = None
    # A second signal: leave without waiting for acknowledgements.
    hurry: bool = False

    def on_signal(self, signum: int) -> bool:
        """Note a signal; whether it is the first (a second one means hurry)."""
        if self.signal is not None:
            self.hurry = True
            return False
        self.signal, self.signal_time = signum, time.monotonic()
        return True

    def reason(self, jobs_started: int, max_jobs: int) -> str | None:
        """Why the pilot stops, or None while it goes on."""
        if self.refused is not None:
            return f"refused by the server: {self.refused}"
        if self.signal is not None:
            return f"received {signal.Signals(self.signal).name}"
        if self.soft_kill:
            return "soft kill from the server"
        if max_jobs and jobs_started >= max_jobs:
            return f"ran {jobs_started} job(s), the maximum"
        return None

    def may_wait_for_acks(self) -> bool:
        return not self.hurry and self.refused is None

    def delivery_deadline(self, started: float, lifetime_left: float) -> float:
        """Until when (monotonic) final updates may still be delivered, from `started`."""
        deadline = started + min(max(lifetime_left, 1.0), EXIT_DELIVERY_SECONDS)
        if self.signal is not None:
            # A signal cuts the wait short, also one that arrives while we wait.
            deadline = min(deadline, max(started, self.signal_time) + SIGNAL_EXIT_DELIVERY_SECONDS)
        return deadline

    def exit_code(self, *, unacknowledged: bool, ever_connected: bool) -> int:
        if self.refused is not None:
            return EXIT_REFUSED
        if self.signal is not None:
            return 128 + self.signal
        if not ever_connected or unacknowledged:
            return EXIT_FAILURE
        return EXIT_OK
