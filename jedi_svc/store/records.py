"""What JEDI's stores return: the domain's own types read from rows, and the records of what
users read (a task with its progress and history, a dataset with its totals, a file with its
state in a task)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Row, Table

from jedi_svc.domain.chunks import FileTaskState, TaskChunk
from jedi_svc.domain.datasets import DatasetFile
from jedi_svc.domain.jobs import JobSpec, TaskJob
from jedi_svc.domain.progress import Progress
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import Task
from jedi_svc.store.tables import contents, files, jobs
from panda_runtime.service.db import aware

__all__ = [
    "CHUNK_COLUMNS", "FILE_COLUMNS", "JOB_COLUMNS", "REQUEST_KEY_COLUMNS", "BatchJob", "Command", "DatasetFileView",
    "DatasetRecord", "PlanResult", "TaskEvent", "TaskHead", "TaskView", "chunk_of", "file_of", "job_of", "task_of",
]


def _columns_of(table: Table, record: type) -> list[Column[Any]]:
    """The table's columns a record's fields name, in the fields' order: a row of them makes
    the record by position, much faster than by name for the thousands a step reads."""
    return [table.c[f.name] for f in fields(record)]


CHUNK_COLUMNS = _columns_of(contents, TaskChunk)
FILE_COLUMNS = _columns_of(files, DatasetFile)
# Every column of jedi_jobs but the (large) spec.
JOB_COLUMNS = _columns_of(jobs, TaskJob)


# Columns of the idempotency key's owner that the records leave out: only submission reads them.
REQUEST_KEY_COLUMNS = ("request_caller", "request_digest")


def task_of(row: Row[Any]) -> Task:
    values = dict(row._mapping)
    for name in REQUEST_KEY_COLUMNS:
        values.pop(name, None)
    values["state"] = TaskState(values["state"])
    values["wait_until"] = aware(values["wait_until"])
    return Task(**values)


def chunk_of(row: Sequence[Any]) -> TaskChunk:
    """From a row of CHUNK_COLUMNS."""
    return TaskChunk(*row)


def job_of(row: Sequence[Any]) -> TaskJob:
    """From a row of JOB_COLUMNS."""
    return TaskJob(*row)


def file_of(row: Sequence[Any]) -> DatasetFile:
    """From a row of FILE_COLUMNS."""
    return DatasetFile(*row)


@dataclass(frozen=True, slots=True)
class TaskHead:
    """What an agent needs to know of a task before it looks closer."""

    task_id: int
    state: TaskState
    wait_until: datetime | None


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """A line of a task's history (and of the WatchTasks log)."""

    cursor: int
    task_id: int
    state: str
    previous_state: str
    time: datetime
    reason: str


@dataclass(slots=True)
class TaskView:
    """A task as users see it."""

    task: Task
    progress: Progress
    # Server job state -> the task's jobs in it.
    job_counts: dict[str, int]
    output_files: int
    output_bytes: int
    output_dataset: str
    history: list[TaskEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    dataset_id: int
    name: str
    # input or output
    kind: str
    owner: str
    # The task whose output it is (0: an input dataset).
    task_id: int
    request_id: str | None
    create_time: datetime
    update_time: datetime
    file_count: int
    total_bytes: int
    total_events: int
    scope: str = ""


@dataclass(frozen=True, slots=True)
class DatasetFileView:
    file: DatasetFile
    # Its state in the task asked about (None: not one of its inputs, or no task asked).
    task_state: FileTaskState | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A user's command whose work reaches the server, for the commander."""

    command_id: int
    task_id: int
    kind: str
    args: dict[str, Any]
    create_time: datetime
    done_time: datetime | None
    # The task's VO (which storage elements its jobs may read).
    vo: str


@dataclass(frozen=True, slots=True)
class BatchJob:
    row_id: int
    serial: int
    state: str
    spec: JobSpec


@dataclass(slots=True)
class PlanResult:
    # Batches stored (their jobs submitting) and jobs in them.
    batches: list[int] = field(default_factory=list)
    jobs: int = 0
    pending_reason: str = ""
    # Batch -> (request id, job specs in serial order), as stored: the submitter needs not read them back.
    specs: dict[int, tuple[str, list[JobSpec]]] = field(default_factory=dict)
