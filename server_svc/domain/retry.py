"""The retry policy: what becomes of a job whose attempt failed."""

from __future__ import annotations

from datetime import datetime

from server_svc.domain.jobs import Change, Job, change_state
from server_svc.domain.states import JobState

__all__ = ["fail_attempt", "is_retried"]


def is_retried(job: Job) -> bool:
    """When is a failed job retried? When nobody asked to stop it and it has attempts left."""
    return not job.kill_requested and job.attempt < job.max_attempts


def fail_attempt(job: Job, now: datetime, code: int, diag: str) -> Change:
    """Fail the job's current attempt with error `code`. A job told to stop ends cancelled
    instead; a retried one comes back activated as its next attempt, on no pilot, with its
    times of the last attempt cleared; any other ends failed."""
    job.error_code, job.error_diag = code, diag
    if job.kill_requested:
        return Change([change_state(job, JobState.CANCELLED, now, f"killed ({diag})", code)])
    retried = is_retried(job)
    events = [change_state(job, JobState.FAILED, now, diag, code)]
    if retried:
        job.attempt += 1
        job.pilot_id, job.node, job.end_time, job.start_time, job.heartbeat_time = "", "", None, None, None
        events.append(change_state(
            job, JobState.ACTIVATED, now, f"retry: attempt {job.attempt} of {job.max_attempts} after error {code}"
        ))
    return Change(events, reactivated=retried)
