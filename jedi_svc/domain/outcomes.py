"""What the server's job events do to JEDI's jobs, and what an ended job does to its chunks
and its task's counters. No I/O.

Replaying events changes nothing: an event at or before the last one applied to its job, or
after the job's final state, is ignored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jedi_svc.domain.chunks import TaskChunk
from jedi_svc.domain.jobs import JOB_FINAL_STATES, JobDetails, JobEvent, TaskJob
from jedi_svc.domain.progress import CANCELLED, FAILED, FINISHED, READY
from jedi_svc.domain.states import TaskState

__all__ = ["MAX_DIAG", "ChunkOutcome", "apply_event", "changes_job", "chunk_outcome", "chunk_outcomes", "counts_as"]

# Longest error diagnosis kept.
MAX_DIAG = 4000
_STOPPING = (TaskState.ABORTING, TaskState.FINISHING)


def changes_job(event: JobEvent, job: TaskJob) -> bool:
    """An event changes a job unless it is at or before the job's last cursor, the job has
    ended, or it says the state the job is in."""
    return event.cursor > job.last_cursor and job.state not in JOB_FINAL_STATES and event.state != job.state


def apply_event(job: TaskJob, event: JobEvent, details: JobDetails | None, at: datetime) -> bool:
    """Record the event on the job (its state, cursor; when it ends, its error and, finished,
    its measurements). False when the event changes nothing."""
    if not changes_job(event, job):
        return False
    job.state, job.last_cursor = event.state, event.cursor
    if event.state in JOB_FINAL_STATES:
        job.end_time = at
        job.error_code, job.error_diag = event.error_code, event.reason[:MAX_DIAG]
        if event.state == "finished" and details is not None:
            job.max_rss_mb = details.max_rss_mb
            job.walltime_used = details.walltime_seconds
            job.cpu_seconds = details.cpu_seconds
    return True


def chunk_outcome(job_state: str, task_state: TaskState, attempts: int, max_attempts: int) -> str:
    """What becomes of a chunk (a file, or part of one) whose job ended in `job_state`, after
    `attempts` of its `max_attempts`: finished with its job; cancelled when the task is being
    killed, or when its job was cancelled while the task is being finished; else ready for
    another job while attempts are left, and failed for good when none are."""
    if job_state == "finished":
        return FINISHED
    if task_state == TaskState.ABORTING or (task_state in _STOPPING and job_state == "cancelled"):
        return CANCELLED
    return READY if attempts < max_attempts else FAILED


def counts_as(job_state: str, task_state: TaskState) -> tuple[int, int]:
    """What an ended job adds to its task's (jobs_finished, jobs_failed), the failure rate's
    counts: a job cancelled while the task is being finished or killed counts as neither."""
    if job_state == "finished":
        return 1, 0
    if task_state in _STOPPING and job_state == "cancelled":
        return 0, 0
    return 0, 1


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    content_id: int
    status: str
    error_code: int
    error_diag: str


def chunk_outcomes(job: TaskJob, task_state: TaskState, chunks: Mapping[int, TaskChunk]) -> list[ChunkOutcome]:
    """The new status of each chunk an ended job ran (a chunk since given to another job is
    left alone); a job that did not finish leaves its error on them."""
    found: list[ChunkOutcome] = []
    for content_id in job.content_ids:
        chunk = chunks.get(content_id)
        if chunk is None or chunk.job_row != job.row_id:
            continue
        status = chunk_outcome(job.state, task_state, chunk.attempts, chunk.max_attempts)
        if job.state == "finished":
            found.append(ChunkOutcome(content_id, status, chunk.error_code, chunk.error_diag))
        else:
            found.append(ChunkOutcome(content_id, status, job.error_code, job.error_diag))
    return found
