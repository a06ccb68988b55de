"""The jobs JEDI makes: their specs as submitted to the server, JEDI's record of each, and
what the server tells about them (events of its WatchJobs stream, details of finished
jobs). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

__all__ = [
    "ACTIVATED", "JOB_FINAL_STATES", "SUBMITTING", "JobDetails", "JobEvent", "JobFileSpec", "JobInFlight",
    "JobResources", "JobSpec", "OutputFile", "TaskJob", "request_id",
]

# Server job states after which a job does nothing more.
JOB_FINAL_STATES = frozenset({"finished", "failed", "cancelled", "closed"})
# JEDI's own state of a job stored and not yet known to be at the server.
SUBMITTING = "submitting"
# The server's state of a job waiting for a pilot.
ACTIVATED = "activated"


class JobResources(TypedDict):
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int


class _JobFileSpec(TypedDict):
    lfn: str
    kind: str  # input, output or log


class JobFileSpec(_JobFileSpec, total=False):
    size_bytes: int
    adler32: str
    storage_element: str
    scope: str  # absent: the job owner's


class JobSpec(TypedDict):
    """A job as JEDI submits it (and stores it, as JSON, until the server has it)."""

    queue: str
    priority: int
    label: str
    task_id: int
    max_attempts: int
    command: list[str]
    environment: dict[str, str]
    resources: JobResources
    files: list[JobFileSpec]


def request_id(token: str, task_id: int, batch: int) -> str:
    """A batch's request id: the task's random token, its id and the batch number, so a batch
    sent again is one the server already knows."""
    return f"jedi-{token[:20]}-{task_id}-{batch}"


@dataclass(slots=True)
class TaskJob:
    """JEDI's record of a job (all but its spec)."""

    row_id: int
    task_id: int
    serial: int
    batch: int
    # The server's job id, once the server has the job.
    job_id: int | None
    # submitting, then the server's job state names.
    state: str
    scout: bool
    queue: str
    priority: int
    attempt: int
    content_ids: list[int]
    output_lfn: str
    # The server event last applied to this job.
    last_cursor: int
    error_code: int
    error_diag: str
    max_rss_mb: int
    walltime_used: float
    cpu_seconds: float
    create_time: datetime
    end_time: datetime | None


@dataclass(frozen=True, slots=True)
class JobInFlight:
    """A job at the server that has not ended, with its spec (what a command acts on)."""

    row_id: int
    job_id: int
    state: str
    queue: str
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event of the server's WatchJobs stream, as JEDI needs it."""

    cursor: int
    job_id: int
    task_id: int
    state: str
    error_code: int = 0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OutputFile:
    scope: str
    lfn: str
    size_bytes: int
    adler32: str
    storage_element: str


@dataclass(frozen=True, slots=True)
class JobDetails:
    """What the server tells about a finished job: its outputs and measurements."""

    outputs: list[OutputFile] = field(default_factory=list)
    max_rss_mb: int = 0
    walltime_seconds: float = 0.0
    cpu_seconds: float = 0.0
