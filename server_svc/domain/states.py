"""The job state machine: which changes are allowed, with no I/O (unit-testable alone)."""

from __future__ import annotations

from enum import StrEnum

from panda_runtime.contracts.server import JOB_PILOT_STATES, JOB_QUEUED_STATES
from panda_runtime.service.errors import FailedPrecondition

__all__ = [
    "ALLOWED", "FINAL_STATES", "PILOT_STATES", "QUEUED_STATES", "JobState", "can_transition", "check_transition",
    "is_final", "is_heartbeat",
]


class JobState(StrEnum):
    DEFINED = "defined"
    PENDING = "pending"
    ACTIVATED = "activated"
    SENT = "sent"
    STARTING = "starting"
    RUNNING = "running"
    HOLDING = "holding"
    TRANSFERRING = "transferring"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CLOSED = "closed"
    THROTTLED = "throttled"


FINAL_STATES = frozenset({JobState.FINISHED, JobState.FAILED, JobState.CANCELLED, JobState.CLOSED})
# Waiting for a pilot: a kill cancels these at once, and reassign may move them (the contract's).
QUEUED_STATES = frozenset(JobState(name) for name in JOB_QUEUED_STATES)
# Held by a pilot: a kill goes down the pilot's stream.
PILOT_STATES = frozenset(JobState(name) for name in JOB_PILOT_STATES)

_ENDINGS = {JobState.FINISHED, JobState.FAILED, JobState.CANCELLED, JobState.CLOSED}
ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.DEFINED: frozenset({JobState.PENDING, JobState.ACTIVATED, JobState.THROTTLED,
                                 JobState.CANCELLED, JobState.CLOSED}),
    JobState.PENDING: frozenset({JobState.DEFINED, JobState.ACTIVATED, JobState.THROTTLED,
                                 JobState.CANCELLED, JobState.CLOSED}),
    JobState.THROTTLED: frozenset({JobState.ACTIVATED, JobState.CANCELLED, JobState.CLOSED}),
    JobState.ACTIVATED: frozenset({JobState.SENT, JobState.THROTTLED, JobState.PENDING,
                                   JobState.CANCELLED, JobState.CLOSED}),
    # sent -> activated: the pilot never took the job (its stream died), so it goes back.
    JobState.SENT: frozenset({JobState.ACTIVATED, JobState.STARTING, JobState.RUNNING, *_ENDINGS}),
    JobState.STARTING: frozenset({JobState.RUNNING, JobState.HOLDING, JobState.TRANSFERRING, *_ENDINGS}),
    JobState.RUNNING: frozenset({JobState.HOLDING, JobState.TRANSFERRING, *_ENDINGS}),
    JobState.HOLDING: frozenset({JobState.TRANSFERRING, *_ENDINGS}),
    JobState.TRANSFERRING: frozenset({JobState.HOLDING, *_ENDINGS}),
    JobState.FINISHED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.CLOSED: frozenset(),
}


def is_final(state: JobState) -> bool:
    return state in FINAL_STATES


def can_transition(current: JobState, new: JobState) -> bool:
    return new in ALLOWED[current]


def check_transition(job_id: int, current: JobState, new: JobState) -> None:
    """Raise FAILED_PRECONDITION, naming the current state, for a change the lifecycle forbids."""
    if not can_transition(current, new):
        raise FailedPrecondition(
            f"job {job_id} is {current.value}: it cannot become {new.value}",
            subject=f"jobs/{job_id}",
        )


def is_heartbeat(current: JobState, new: JobState) -> bool:
    """A pilot repeating the state a job it holds is already in."""
    return current == new and current in PILOT_STATES
