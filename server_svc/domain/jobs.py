"""A job as the rules see it, as callers are shown it, its files and its event log; and the one
transition every rule makes: a change of state, recorded as an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from server_svc.domain.states import FINAL_STATES, JobState

__all__ = ["Change", "Job", "JobChanges", "JobEvent", "JobFile", "JobRecord", "OutputFile", "change_state"]


@dataclass(slots=True)
class Job:
    """What deciding a job's next state reads and may change: the rules change it in place
    and return what they did (a `Change`). The names are the stored columns'."""

    job_id: int
    owner: str
    vo: str
    task_id: int
    max_attempts: int
    state: JobState
    attempt: int
    queue: str
    state_time: datetime  # when the job entered its state: what the watchdogs measure
    update_time: datetime
    heartbeat_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    exit_code: int
    error_code: int
    error_diag: str
    log_tail: str
    max_rss_mb: int
    cpu_seconds: float
    pilot_id: str  # the pilot holding the job ("" when none)
    node: str
    kill_requested: bool  # a kill was asked while a pilot held the job: it ends cancelled


@dataclass(slots=True)
class JobFile:
    """An input, output or log file of a job."""

    job_id: int
    scope: str  # with lfn, the file's identity (e.g. user.alice, or a VO's scope)
    lfn: str
    kind: str  # input | output | log
    status: str  # defined | ready | failed
    size_bytes: int
    adler32: str
    storage_element: str  # the id of a configured storage element
    attempt: int  # the attempt that wrote it (outputs); 0 before
    file_id: int = 0  # 0 until stored
    storage_url: str = ""  # the element's URL, read with the file (not a column of it)


@dataclass(slots=True)
class JobEvent:
    """One entry of the event log: a job's change of state."""

    job_id: int
    attempt: int
    state: JobState
    previous_state: JobState | None  # None: the job was just submitted
    time: datetime
    error_code: int
    reason: str
    queue: str
    task_id: int
    cursor: int = 0  # the log's position, given when written


@dataclass(slots=True)
class JobRecord(Job):
    """A stored job in full: what callers are shown and pilots are sent."""

    priority: int
    label: str
    # What it asks of a pilot, and runs there.
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    command: list[str]
    environment: dict[str, str]
    request_id: str | None  # of the SubmitJobs call that made it, if it named one
    request_caller: str | None  # who sent that request_id (the key is the caller's)
    request_digest: str | None  # of the request it came with
    create_time: datetime
    # The harvester worker of the pilot it was last sent to (see the jobs table); not a state
    # column: the rules never change it, the dispatcher's claim writes it.
    worker_id: str | None = None
    files: list[JobFile] = field(default_factory=list)
    history: list[JobEvent] = field(default_factory=list)  # filled only when asked for


@dataclass(slots=True)
class OutputFile:
    """An output or log file a job wrote, as registered when it finished. It stays on the
    storage element the server gave it: a pilot does not choose."""

    job_id: int
    attempt: int
    lfn: str
    size_bytes: int
    adler32: str


@dataclass(slots=True)
class Change:
    """What a rule did to a job it changed: the events for the log, whether the job came back
    activated to be dispatched again, and the output files it registered."""

    events: list[JobEvent]
    reactivated: bool = False
    outputs: list[OutputFile] = field(default_factory=list)


@dataclass(slots=True)
class JobChanges:
    """The jobs changed in one transaction (each written once, as it ends), the events in the
    order they happened, the output files registered, and how many jobs came back activated
    (the dispatcher wants to know)."""

    jobs: dict[int, Job] = field(default_factory=dict)
    events: list[JobEvent] = field(default_factory=list)
    outputs: list[OutputFile] = field(default_factory=list)
    reactivated: int = 0

    def add(self, job: Job, change: Change) -> None:
        self.jobs[job.job_id] = job
        self.events += change.events
        self.outputs += change.outputs
        self.reactivated += change.reactivated


def change_state(job: Job, new: JobState, now: datetime, reason: str = "", error_code: int = 0) -> JobEvent:
    """Move the job to `new` (its times follow: entered now, started on first running, ended
    on a final state) and return the event that records the change."""
    event = JobEvent(job.job_id, job.attempt, new, job.state, now, error_code, reason, job.queue, job.task_id)
    job.state = new
    job.state_time = now
    job.update_time = now
    if new is JobState.RUNNING and job.start_time is None:
        job.start_time = now
    if new in FINAL_STATES:
        job.end_time = now
    return event
