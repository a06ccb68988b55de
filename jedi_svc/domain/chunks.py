"""A task's inputs cut into chunks (a file, or a range of its events: PanDA's dataset
contents), and how chunks make up jobs. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jedi_svc.domain.progress import CANCELLED, FAILED, READY, file_status

__all__ = ["RUN_AGAIN_ON_RETRY", "FileTaskState", "TaskChunk", "file_task_state", "job_groups"]

# A retried task runs these chunks again, each with a new budget of the task's max_attempts.
RUN_AGAIN_ON_RETRY = (FAILED, CANCELLED, READY)


@dataclass(slots=True)
class TaskChunk:
    content_id: int
    task_id: int
    file_id: int
    first_event: int
    # 0: the whole file.
    n_events: int
    # The job of the first split this chunk goes to.
    split_group: int
    # ready, running, finished, failed, cancelled (domain.progress)
    status: str
    attempts: int
    max_attempts: int
    # The JEDI job (TaskJob.row_id) of the latest attempt.
    job_row: int
    error_code: int
    error_diag: str


def job_groups(ready: list[TaskChunk]) -> list[list[TaskChunk]]:
    """The chunks of each job to make: chunks never run go in the groups of the first split
    (in group order), retried chunks run one per job, so a bad input does not doom its
    neighbours a second time."""
    groups: dict[int, list[TaskChunk]] = {}
    retries: list[list[TaskChunk]] = []
    for chunk in ready:
        if chunk.attempts == 0:
            groups.setdefault(chunk.split_group, []).append(chunk)
        else:
            retries.append([chunk])
    return [groups[g] for g in sorted(groups)] + retries


@dataclass(frozen=True, slots=True)
class FileTaskState:
    """A file's state in a task, from its chunks."""

    task_id: int
    status: str
    attempts: int
    max_attempts: int
    # The server job of the latest attempt (0: none yet).
    job_id: int
    error_code: int
    error_diag: str
    chunks: int


def file_task_state(task_id: int, chunks: list[TaskChunk], job_ids: Mapping[int, int]) -> FileTaskState:
    """From a file's chunks in the task (in order; at least one) and the server job ids of
    JEDI's jobs (by TaskJob.row_id): its status by progress.file_status, the most attempts,
    the job of the latest attempt, and the last error any chunk had (else the latest's)."""
    latest = max(chunks, key=lambda c: (c.attempts, c.content_id))
    failed = [c for c in chunks if c.error_code or c.error_diag]
    error = failed[-1] if failed else latest
    return FileTaskState(
        task_id=task_id, status=file_status(c.status for c in chunks), attempts=max(c.attempts for c in chunks),
        max_attempts=max(c.max_attempts for c in chunks), job_id=job_ids.get(latest.job_row, 0),
        error_code=error.error_code, error_diag=error.error_diag, chunks=len(chunks))
