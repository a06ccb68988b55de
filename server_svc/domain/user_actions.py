"""What a user may do to jobs, job by job: kill them, move them to another queue. Who may act
on a job, and what each action does in each state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from panda_runtime.service.errors import FailedPrecondition, NotFound, PermissionDenied, ServiceError
from panda_runtime.service.principals import Scope
from server_svc.domain.jobs import Change, Job, change_state
from server_svc.domain.states import PILOT_STATES, QUEUED_STATES, JobState

__all__ = ["ActionDecision", "ActionResult", "CommandKind", "PilotCommand", "kill", "reassign"]


class CommandKind(StrEnum):
    KILL = "kill"
    SOFT_KILL = "soft_kill"
    DEBUG = "debug"


@dataclass(slots=True)
class PilotCommand:
    """A command for the pilot holding a job, delivered on whichever server's stream holds it."""

    job_id: int
    attempt: int
    kind: CommandKind
    reason: str
    pilot_id: str
    create_time: datetime
    command_id: int = 0  # 0 until stored
    delivered_time: datetime | None = None


@dataclass(slots=True)
class ActionResult:
    """An action's answer for one job: the state it left the job in, or why it was refused."""

    job_id: int
    state: JobState | None = None
    error: ServiceError | None = None
    # (pilot id, attempt) when a command must reach the pilot holding the job.
    pilot_command: tuple[str, int] | None = None


@dataclass(slots=True)
class ActionDecision:
    """The result, and what to write: the job's change and a command for its pilot, if any."""

    result: ActionResult
    change: Change | None = None
    command: PilotCommand | None = None


def _refusal(job_id: int, job: Job | None) -> ActionDecision:
    """For a job that is not there, or not the caller's to act on (a user acts on its own
    jobs, production on its VOs' jobs, admins on all: see `Scope.covers`)."""
    if job is None:
        return ActionDecision(ActionResult(job_id, error=NotFound(f"job {job_id} not found")))
    denied = PermissionDenied(f"job {job_id} belongs to {job.owner or 'nobody'}: you may not act on it")
    return ActionDecision(ActionResult(job_id, state=job.state, error=denied))


def kill(job_id: int, job: Job | None, scope: Scope, reason: str, now: datetime) -> ActionDecision:
    """A job waiting for a pilot is cancelled at once. One a pilot holds is marked to be
    killed, and a kill command goes to its pilot (once; asking again only repeats the
    delivery); it ends cancelled when the pilot confirms, or when the watchdog gives up on it.
    A job that already ended is refused."""
    if job is None or not scope.covers(job.owner, job.vo):
        return _refusal(job_id, job)
    if job.state in QUEUED_STATES:
        event = change_state(job, JobState.CANCELLED, now, reason)
        return ActionDecision(ActionResult(job_id, state=job.state), Change([event]))
    if job.state in PILOT_STATES:
        result = ActionResult(job_id, state=job.state, pilot_command=(job.pilot_id, job.attempt))
        if job.kill_requested:
            return ActionDecision(result)
        job.kill_requested = True
        job.update_time = now
        command = PilotCommand(job.job_id, job.attempt, CommandKind.KILL, reason, job.pilot_id, now)
        return ActionDecision(result, Change([]), command)
    already = FailedPrecondition(f"job {job_id} is already {job.state}", subject=f"jobs/{job_id}")
    return ActionDecision(ActionResult(job_id, state=job.state, error=already))


def reassign(
    job_id: int, job: Job | None, scope: Scope, queue_id: str, now: datetime,
    storage_problem: Callable[[Job], str] = lambda job: "",
) -> ActionDecision:
    """Only a job not yet sent to a pilot moves: to `queue_id`, activated there; not when its
    files could not be read or written there (`storage_problem` says why, or "")."""
    if job is None or not scope.covers(job.owner, job.vo):
        return _refusal(job_id, job)
    if job.state not in QUEUED_STATES:
        error = FailedPrecondition(
            f"job {job_id} is {job.state}: only jobs not yet sent to a pilot can be reassigned",
            subject=f"jobs/{job_id}",
        )
        return ActionDecision(ActionResult(job_id, state=job.state, error=error))
    problem = storage_problem(job)
    if problem:
        error = FailedPrecondition(f"job {job_id} cannot move to {queue_id}: {problem}", subject=f"jobs/{job_id}",
                                   violation_type="STORAGE")
        return ActionDecision(ActionResult(job_id, state=job.state, error=error))
    previous, job.queue = job.queue, queue_id
    event = change_state(job, JobState.ACTIVATED, now, f"reassigned from {previous} to {queue_id}")
    return ActionDecision(ActionResult(job_id, state=job.state), Change([event]))
