"""How a pilot's report on a job it holds applies: who may report (fencing), heartbeats,
failures, the end of a job, and what is acknowledged."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from panda_runtime.service.errors import FailedPrecondition, NotFound, PermissionDenied, ServiceError
from server_svc.domain.jobs import Change, Job, JobChanges, OutputFile, change_state
from server_svc.domain.retry import fail_attempt
from server_svc.domain.states import FINAL_STATES, JobState, can_transition, check_transition, is_heartbeat

__all__ = ["ANY_QUEUE", "MAX_LOG_TAIL", "AppliedUpdates", "PilotUpdate", "UpdateOutcome", "apply_pilot_update",
           "apply_pilot_updates", "check_reporter"]

MAX_LOG_TAIL = 16 * 1024  # characters of a payload's log kept with the job
# In a PilotUpdate's queues: the token names every queue (as admins' and harvesters' do).
ANY_QUEUE = "*"


@dataclass(slots=True)
class PilotUpdate:
    """One job update from a pilot's stream."""

    job_id: int
    attempt: int
    state: JobState
    pilot_id: str
    exit_code: int = 0
    error_code: int = 0
    error_diag: str = ""
    log_tail: str = ""
    max_rss_mb: int = 0
    cpu_seconds: float = 0.0
    output_files: list[OutputFile] = field(default_factory=list)
    # The queues the stream's token names (ANY_QUEUE: all): a job of another queue is refused.
    queues: frozenset[str] = field(kw_only=True)


@dataclass(slots=True)
class UpdateOutcome:
    """What an update came to: the state it left the job's attempt in, or why it was refused."""

    job_id: int
    attempt: int
    state: JobState | None  # None: no such job
    error: ServiceError | None = None


@dataclass(slots=True)
class AppliedUpdates:
    outcomes: list[UpdateOutcome]  # one per update, in order
    changes: JobChanges


def check_reporter(job: Job, update: PilotUpdate) -> None:
    """Only the pilot a job was sent to reports on it, and only for a queue its token names:
    PERMISSION_DENIED otherwise. An update for another attempt than the job's current one is
    FAILED_PRECONDITION (STALE_ATTEMPT): the job may since have gone back to no pilot or to the
    same one, and its old pilot is told its attempt is over."""
    if job.pilot_id and update.pilot_id != job.pilot_id:
        raise PermissionDenied(f"job {job.job_id} was not sent to pilot {update.pilot_id}")
    if ANY_QUEUE not in update.queues and job.queue not in update.queues:
        raise PermissionDenied(
            f"job {job.job_id} is of queue {job.queue}, which the token of pilot {update.pilot_id} does not name"
        )
    if update.attempt != job.attempt:
        raise FailedPrecondition(
            f"job {job.job_id} is at attempt {job.attempt} ({job.state}); "
            f"the update for attempt {update.attempt} is stale",
            subject=f"jobs/{job.job_id}", violation_type="STALE_ATTEMPT",
        )
    if not job.pilot_id:
        raise PermissionDenied(f"job {job.job_id} was not sent to pilot {update.pilot_id}")


def apply_pilot_update(job: Job, update: PilotUpdate, now: datetime) -> Change:
    """Apply one update to the job, or refuse it: PERMISSION_DENIED from a pilot the job was
    not sent to (see `check_reporter`), FAILED_PRECONDITION for a stale attempt or a change the
    lifecycle forbids. The job's peak memory and CPU time only grow."""
    check_reporter(job, update)
    current, new = job.state, update.state
    job.max_rss_mb = max(job.max_rss_mb, update.max_rss_mb)
    job.cpu_seconds = max(job.cpu_seconds, update.cpu_seconds)
    if is_heartbeat(current, new):
        job.heartbeat_time = job.update_time = now
        return Change([])
    if new is JobState.FAILED and can_transition(current, JobState.FAILED):
        job.heartbeat_time, job.exit_code, job.log_tail = now, update.exit_code, update.log_tail[-MAX_LOG_TAIL:]
        return fail_attempt(job, now, update.error_code, update.error_diag or f"failed with error {update.error_code}")
    if new is JobState.FINISHED and job.kill_requested:
        # The payload ended on its own before the kill reached it: it still counts.
        job.kill_requested = False
    check_transition(job.job_id, current, new)
    job.heartbeat_time = now
    if new in FINAL_STATES:
        job.exit_code, job.log_tail = update.exit_code, update.log_tail[-MAX_LOG_TAIL:]
        job.error_code, job.error_diag = update.error_code, update.error_diag
    if new is JobState.FINISHED:
        # Every output the pilot reports registers, written by this attempt.
        outputs = update.output_files
        reason = f"finished, {len(outputs)} output file(s) registered"
        return Change([change_state(job, new, now, reason, update.error_code)], outputs=outputs)
    reason = "killed; the pilot confirmed" if new is JobState.CANCELLED else ""
    return Change([change_state(job, new, now, reason, update.error_code)])


def apply_pilot_updates(jobs: Mapping[int, Job], updates: Sequence[PilotUpdate], now: datetime) -> AppliedUpdates:
    """Apply a batch of updates in order (several may concern one job); one refused does not
    stop the others. A failed attempt that is retried reports its own end, not the next
    attempt's state."""
    changes = JobChanges()
    outcomes: list[UpdateOutcome] = []
    for update in updates:
        job = jobs.get(update.job_id)
        try:
            if job is None:
                raise NotFound(f"job {update.job_id} not found")
            changes.add(job, apply_pilot_update(job, update, now))
            ended = job.state if job.attempt == update.attempt else update.state
            outcomes.append(UpdateOutcome(update.job_id, update.attempt, ended))
        except ServiceError as error:
            outcomes.append(UpdateOutcome(update.job_id, update.attempt, job.state if job else None, error))
    return AppliedUpdates(outcomes, changes)
