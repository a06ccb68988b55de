"""The watchdogs' rules: which jobs they end (a state held too long, measured from a given
time), with which code and diagnosis, and whether the job is retried; and the grace after
a restart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from server_svc.domain import error_codes
from server_svc.domain.jobs import Change, Job, change_state
from server_svc.domain.retry import fail_attempt
from server_svc.domain.states import PILOT_STATES, JobState

__all__ = ["Clock", "WatchdogLimits", "WatchdogRule", "apply_rule", "pilots_forgotten_before", "rules_in_force"]


class Clock(Enum):
    """What a rule's timeout is measured from."""

    STATE_ENTERED = "state_time"  # when the job entered its state
    LAST_HEARTBEAT = "heartbeat_time"  # the pilot's last heartbeat, or entering the state if none came
    KILL_ASKED = "kill_time"  # when the kill command was written (for jobs whose kill was asked)


@dataclass(frozen=True, slots=True)
class WatchdogLimits:
    """The timeouts, in seconds (the server's settings)."""

    sent_timeout: float
    heartbeat_timeout: float
    holding_timeout: float
    kill_grace: float


@dataclass(frozen=True, slots=True)
class WatchdogRule:
    """Jobs in one of `states` whose `clock` is older than `timeout` seconds are ended with
    `code` and `diagnosis`: failed (then retried by the retry policy) if `retries`, else
    cancelled. A rule that `holds_silence` against a job (no reply, no heartbeat from its
    pilot) waits a whole timeout after a restart. A rule that `spares_heard_pilots` leaves
    alone a job whose pilot was heard on its stream within the timeout: its heartbeats may be
    in a dispatch round that failed, and it resends what was not acknowledged."""

    name: str
    states: frozenset[JobState]
    clock: Clock
    timeout: float
    code: int
    diagnosis: str
    retries: bool
    holds_silence: bool
    spares_heard_pilots: bool = False

    def cutoff(self, now: datetime) -> datetime:
        """A job whose clock is older than this is overdue."""
        return now - timedelta(seconds=self.timeout)

    def is_overdue(
        self, state: JobState, clock_time: datetime, now: datetime, pilot_heard: datetime | None = None
    ) -> bool:
        """`pilot_heard`: when the job's pilot was last heard on its stream, if it was."""
        cutoff = self.cutoff(now)
        if self.spares_heard_pilots and pilot_heard is not None and pilot_heard >= cutoff:
            return False
        return state in self.states and clock_time < cutoff


def _rules(limits: WatchdogLimits) -> list[WatchdogRule]:
    """PanDA's watchdogs, in the order they look."""
    return [
        WatchdogRule("sent", frozenset({JobState.SENT}), Clock.STATE_ENTERED, limits.sent_timeout,
                     error_codes.SENT_NO_REPLY, f"sent, no reply from the pilot for {limits.sent_timeout:.0f} s",
                     retries=True, holds_silence=True),
        WatchdogRule("heartbeat", frozenset({JobState.STARTING, JobState.RUNNING, JobState.TRANSFERRING}),
                     Clock.LAST_HEARTBEAT, limits.heartbeat_timeout, error_codes.LOST_HEARTBEAT,
                     f"lost heartbeat (none for {limits.heartbeat_timeout:.0f} s)", retries=True, holds_silence=True,
                     spares_heard_pilots=True),
        WatchdogRule("holding", frozenset({JobState.HOLDING}), Clock.STATE_ENTERED, limits.holding_timeout,
                     error_codes.HOLDING_TIMEOUT, f"holding for more than {limits.holding_timeout:.0f} s",
                     retries=True, holds_silence=False),
        # A kill the pilot never confirmed: the job is given up, not retried.
        WatchdogRule("kill", PILOT_STATES, Clock.KILL_ASKED, limits.kill_grace, error_codes.KILL_NOT_CONFIRMED,
                     error_codes.SERVER_ERRORS[error_codes.KILL_NOT_CONFIRMED], retries=False, holds_silence=False),
    ]


def rules_in_force(limits: WatchdogLimits, watched_for: float) -> list[WatchdogRule]:
    """The rules that apply once this server has watched for `watched_for` seconds (since it
    started). While it was down no pilot could reach it, so a pilot's silence (no reply to a
    job sent, no heartbeat) is held against a job only once a whole timeout has passed since."""
    return [rule for rule in _rules(limits) if not (rule.holds_silence and watched_for < rule.timeout)]


def apply_rule(job: Job, rule: WatchdogRule, now: datetime) -> Change:
    """End an overdue job as the rule says."""
    if rule.retries:
        return fail_attempt(job, now, rule.code, rule.diagnosis)
    job.error_code, job.error_diag = rule.code, rule.diagnosis
    return Change([change_state(job, JobState.CANCELLED, now, rule.diagnosis, rule.code)])


def pilots_forgotten_before(limits: WatchdogLimits, now: datetime) -> datetime:
    """Pilot identities not heard of since this are forgotten: by then every rule has ended the
    jobs such a pilot held, and a day more has passed for it to come back."""
    longest = max(limits.sent_timeout, limits.heartbeat_timeout, limits.holding_timeout, limits.kill_grace)
    return now - timedelta(seconds=longest + 86400)
