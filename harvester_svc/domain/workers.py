"""A worker (one pilot's batch job) and its states, as PanDA's Harvester has them. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = [
    "ACTIVE_STATES", "FINAL_STATES", "QUEUED_STATES", "BatchReport", "SubmitOutcome", "SubmittedWorker",
    "WorkerSpec", "WorkerState", "can_transition",
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

    worker_id: int
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
    worker_id: int
    # The batch system's id of the worker; empty when the submission failed.
    batch_id: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class SubmittedWorker:
    """A worker the batch system knows, as the plugin needs it to check, kill or clean it."""

    worker_id: int
    queue_id: str
    batch_id: str
    access_point: str
    parameters: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchReport:
    """What the batch system says of one worker."""

    worker_id: int
    state: WorkerState
    node: str = ""
    # Why it failed or was cancelled, in the batch system's words.
    error: str = ""
    exit_code: int | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
