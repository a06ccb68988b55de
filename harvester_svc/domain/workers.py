"""A worker (one pilot's batch job) and its states, as PanDA's Harvester has them. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ACTIVE_STATES", "FINAL_STATES", "QUEUED_STATES", "BatchReport", "SubmitOutcome", "SubmittedWorker",
    "WorkerRecord", "WorkerSpec", "WorkerState", "can_transition", "report_change", "worker_id_of",
]


class WorkerState(StrEnum):
    # Handed to the batch system, not started yet.
    SUBMITTED = "submitted"
    # Started by the batch system, its pilot not heard of yet.
    READY = "ready"
    RUNNING = "running"
    # Its pilot runs but has no job.
    IDLE = "idle"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Gone from the batch system without it saying how it ended.
    MISSED = "missed"


W = WorkerState
FINAL_STATES = frozenset({W.FINISHED, W.FAILED, W.CANCELLED, W.MISSED})
# Waiting in the batch system: what nQueueLimitWorker bounds.
QUEUED_STATES = frozenset({W.SUBMITTED, W.READY})
# Holding a slot: what maxWorkers bounds.
ACTIVE_STATES = frozenset({W.SUBMITTED, W.READY, W.RUNNING, W.IDLE})


def can_transition(current: WorkerState, new: WorkerState) -> bool:
    """A final state is final; any live state may move to any other state."""
    return current not in FINAL_STATES and current != new


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a plugin needs to submit one worker."""

    worker_id: str
    queue_id: str
    # The worker's own directory: its pilot's work dir, batch logs, the shared-file messenger's files.
    access_point: str
    cores: int
    memory_mb: int
    walltime_seconds: int
    # The command that starts the pilot, and the environment it needs (server address, token file…).
    pilot_command: tuple[str, ...]
    environment: Mapping[str, str] = field(default_factory=dict)
    # The plugin's own parameters from the queue's configuration (partition, image, schedd…).
    parameters: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    worker_id: str
    # The batch system's id of the worker; empty when the submission failed.
    batch_id: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class SubmittedWorker:
    """A worker the batch system knows, as the plugin needs it to check, kill or clean it."""

    worker_id: str
    queue_id: str
    batch_id: str
    access_point: str
    parameters: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What the batch system says of one worker."""

    worker_id: str
    state: WorkerState
    node: str = ""
    # Why it failed or was cancelled, in the batch system's words.
    error: str = ""
    exit_code: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker as harvester keeps it."""

    worker_id: str
    harvester_id: str
    queue: str
    plugin: str
    batch_id: str
    state: WorkerState
    node: str
    error: str
    exit_code: int | None
    cores: int
    memory_mb: int
    walltime_seconds: int
    access_point: str
    submit_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime
    kill_reason: str
    killed: bool
    cleaned: bool
    version: int
    reported_version: int

    @property
    def submitted(self) -> SubmittedWorker:
        return SubmittedWorker(self.worker_id, self.queue, self.batch_id, self.access_point)


def worker_id_of(harvester_id: str, number: int) -> str:
    """A worker's id: unique across instances, as each instance's id is."""
    return f"{harvester_id}-{number}"


def report_change(worker: WorkerRecord, report: BatchReport, now: datetime) -> dict[str, object]:
    """The columns a batch system's report changes (empty: nothing, or the worker has ended).
    The node and the times are kept once known; a start or an end the batch system does not
    date is dated `now`."""
    if worker.state in FINAL_STATES:
        return {}  # what the server was told of an ended worker stays true
    changes: dict[str, object] = {}
    if report.state != worker.state:
        if not can_transition(worker.state, report.state):
            return {}
        changes["state"] = report.state
    if report.node and report.node != worker.node:
        changes["node"] = report.node
    if report.error and report.error != worker.error:
        changes["error"] = report.error
    if report.exit_code is not None and report.exit_code != worker.exit_code:
        changes["exit_code"] = report.exit_code
    # A batch system's clock (or its rounding) may put a start a moment before harvester's own
    # record of the submission: a worker never starts before it was submitted, nor ends before it started.
    start = worker.start_time
    if start is None and (report.start_time or report.state in _STARTED_STATES):
        start = changes["start_time"] = max(report.start_time or now, worker.submit_time)
    if worker.end_time is None and report.state in FINAL_STATES:
        changes["end_time"] = max(report.end_time or now, start or worker.submit_time)
    return changes


_STARTED_STATES = frozenset({W.READY, W.RUNNING, W.IDLE})
