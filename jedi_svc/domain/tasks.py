"""A task as the agents see it, and what a rule changes on it. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import Enum
from typing import Any, TypedDict

from jedi_svc.domain.brokerage import JobRequest
from jedi_svc.domain.states import TaskState

__all__ = ["EMPTY_SCOUT_REPORT", "KEEP", "Keep", "ScoutReport", "Task", "TaskChange", "underlying_state"]


class ScoutReport(TypedDict):
    """What the scouts measured (stored as it is, as JSON)."""

    jobs: int
    succeeded: int
    failed: int
    memory_mb: int
    walltime_seconds: int
    cpu_seconds: float
    applied: bool


EMPTY_SCOUT_REPORT = ScoutReport(jobs=0, succeeded=0, failed=0, memory_mb=0, walltime_seconds=0, cpu_seconds=0.0,
                                 applied=False)


@dataclass(slots=True)
class Task:
    task_id: int
    task_name: str
    owner: str
    vo: str
    working_group: str
    state: TaskState
    state_reason: str
    # The state to go back to after PENDING, THROTTLED or PAUSED ("" when none).
    resume_state: str
    # The parameters as submitted (TaskParams as JSON).
    params: dict[str, Any]
    split_kind: str
    split_value: float
    priority: int
    queues: list[str]
    excluded_queues: list[str]
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    max_attempts: int
    scout_jobs: int
    max_failure_rate: float
    output_dataset_id: int | None
    scouted: bool
    scout_report: ScoutReport
    # Ended job attempts, for the failure rate.
    jobs_finished: int
    jobs_failed: int
    next_serial: int
    next_batch: int
    wait_until: datetime | None
    request_id: str | None
    token: str
    create_time: datetime
    update_time: datetime
    start_time: datetime | None
    end_time: datetime | None

    @property
    def input_datasets(self) -> list[str]:
        return list(self.params.get("input_datasets", []))

    def job_request(self) -> JobRequest:
        """What each new job of the task asks of a queue."""
        return JobRequest(self.cores, self.memory_mb, self.walltime_seconds, self.disk_mb)


def underlying_state(task: Task) -> TaskState:
    """The state a PENDING or THROTTLED task is in underneath (and goes back to)."""
    if task.state in (TaskState.PENDING, TaskState.THROTTLED):
        return TaskState(task.resume_state or TaskState.READY.value)
    return task.state


class Keep(Enum):
    KEEP = "keep"


# A TaskChange's field left as it is.
KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class TaskChange:
    """What a rule changes on a task. With `state` (other than the task's), a transition; with
    the same state, or none, and a `reason`, a decision that keeps the state; either is
    recorded in the task's history. The other fields are left as they are unless given."""

    state: TaskState | None = None
    reason: str | None = None
    resume_state: str | Keep = KEEP
    wait_until: datetime | Keep | None = KEEP
    start_time: datetime | Keep | None = KEEP
    end_time: datetime | Keep | None = KEEP
    scouted: bool | Keep = KEEP
    scout_report: ScoutReport | Keep = KEEP
    memory_mb: int | Keep = KEEP
    walltime_seconds: int | Keep = KEEP
    jobs_finished: int | Keep = KEEP
    jobs_failed: int | Keep = KEEP
    next_serial: int | Keep = KEEP
    next_batch: int | Keep = KEEP
    priority: int | Keep = KEEP
    queues: list[str] | Keep = KEEP
    excluded_queues: list[str] | Keep = KEEP

    def values(self) -> dict[str, object]:
        """The task's attributes this change sets, other than its state and reason."""
        found: dict[str, object] = {}
        for field in fields(self):
            if field.name not in ("state", "reason"):
                value = getattr(self, field.name)
                if value is not KEEP:
                    found[field.name] = value
        return found
