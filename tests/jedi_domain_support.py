"""Domain values for JEDI's rule tests: a task, chunks, jobs, files and queues with plain
defaults, each field given by keyword where a test cares."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jedi_svc.domain.brokerage import QueueInfo
from jedi_svc.domain.chunks import TaskChunk
from jedi_svc.domain.datasets import DatasetFile
from jedi_svc.domain.jobs import JobInFlight, JobSpec, TaskJob
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import EMPTY_SCOUT_REPORT, ScoutReport, Task

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def make_task(**fields: Any) -> Task:
    values: dict[str, Any] = {
        "task_id": 7, "task_name": "mc23.sim", "owner": "alice", "vo": "atlas", "working_group": "",
        "state": TaskState.READY, "state_reason": "", "resume_state": "",
        "params": {"input_datasets": ["in"], "output_dataset": "out", "transformation": ["run", "${IN}", "${OUT}"]},
        "split_kind": "files", "split_value": 1.0, "priority": 10, "queues": [], "excluded_queues": [], "cores": 1,
        "memory_mb": 2000, "walltime_seconds": 3600, "disk_mb": 0, "max_attempts": 3, "scout_jobs": 0,
        "max_failure_rate": 0.5, "output_dataset_id": 2, "scouted": True, "scout_report": ScoutReport(
            **EMPTY_SCOUT_REPORT), "jobs_finished": 0, "jobs_failed": 0, "next_serial": 1, "next_batch": 1,
        "wait_until": None, "request_id": None, "token": "0123456789abcdef0123456789abcdef", "create_time": AT,
        "update_time": AT, "start_time": None, "end_time": None,
    }
    values.update(fields)
    return Task(**values)


def make_chunk(content_id: int, **fields: Any) -> TaskChunk:
    values: dict[str, Any] = {
        "content_id": content_id, "task_id": 7, "file_id": content_id, "first_event": 0, "n_events": 0,
        "split_group": content_id - 1, "status": "ready", "attempts": 0, "max_attempts": 3, "job_row": 0,
        "error_code": 0, "error_diag": "",
    }
    values.update(fields)
    return TaskChunk(**values)


def make_file(file_id: int, **fields: Any) -> DatasetFile:
    values: dict[str, Any] = {
        "file_id": file_id, "dataset_id": 1, "scope": "user.alice", "lfn": f"in._{file_id:06d}", "size_bytes": 1000,
        "adler32": "0000abcd",
        "events": 0, "storage_elements": ["se-a"], "job_id": 0, "create_time": AT,
    }
    values.update(fields)
    return DatasetFile(**values)


def make_job(row_id: int, **fields: Any) -> TaskJob:
    values: dict[str, Any] = {
        "row_id": row_id, "task_id": 7, "serial": row_id, "batch": 1, "job_id": 100 + row_id, "state": "activated",
        "scout": False, "queue": "q", "priority": 10, "attempt": 1, "content_ids": [row_id], "output_lfn": "out",
        "last_cursor": 0, "error_code": 0, "error_diag": "", "max_rss_mb": 0, "walltime_used": 0.0,
        "cpu_seconds": 0.0, "create_time": AT, "end_time": None,
    }
    values.update(fields)
    return TaskJob(**values)


def make_job_in_flight(job_id: int, queue: str, *, inputs: Sequence[tuple[int, str]] = ()) -> JobInFlight:
    spec = JobSpec(
        queue=queue, priority=1, label="t", task_id=7, max_attempts=1, command=["run"], environment={},
        resources={"cores": 1, "memory_mb": 2000, "walltime_seconds": 3600, "disk_mb": 0},
        files=[*({"lfn": f"in{i}", "kind": "input", "size_bytes": size, "storage_element": se}
                 for i, (size, se) in enumerate(inputs)), {"lfn": "out", "kind": "output"}],
    )
    return JobInFlight(row_id=job_id, job_id=job_id, state="activated", queue=queue, spec=spec)


def make_queue(name: str, **fields: Any) -> QueueInfo:
    return QueueInfo(queue_id=name, status=str(fields.pop("status", "online")), **fields)
