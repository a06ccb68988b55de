"""Submitting jobs, with no database: the queues' limits, and what a new job starts as."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from panda_runtime.service.errors import InvalidArgument, NotFound
from server_svc.domain.job_specs import FileSpec, JobSpec
from server_svc.domain.queues import Queue, check_queue_limits
from server_svc.domain.states import JobState
from server_svc.domain.submission import new_files, new_job, submitted_event
from tests.server_domain_support import NOW

_T = datetime(2026, 1, 1, tzinfo=UTC)


def _queue(**limits: int) -> Queue:
    values: dict[str, Any] = {"max_cores": 0, "max_memory_mb": 0, "max_walltime_seconds": 0, "max_disk_mb": 0,
                              **limits}
    return Queue(queue_id="local", status="online", storage_element="file:///se", description="", create_time=_T,
                 update_time=_T, **values)


def _spec(**fields: Any) -> JobSpec:
    values: dict[str, Any] = {"queue": "local", "command": ["x"], "environment": {}, "cores": 1,
                              "memory_mb": 1000, "walltime_seconds": 60, "disk_mb": 0, "priority": 0,
                              "max_attempts": 2, **fields}
    return JobSpec(**values)


def test_a_job_for_a_queue_that_does_not_exist_is_refused_by_its_place() -> None:
    with pytest.raises(NotFound, match=r"jobs\[1\]: queue elsewhere not found"):
        check_queue_limits([_spec(), _spec(queue="elsewhere")], {"local": _queue()})


@pytest.mark.parametrize(("limit", "asked", "what"), [
    ("max_cores", {"cores": 9}, "9 cores"), ("max_memory_mb", {"memory_mb": 9000}, "9000 MB of memory"),
    ("max_walltime_seconds", {"walltime_seconds": 9000}, "9000 s of walltime"),
    ("max_disk_mb", {"disk_mb": 9000}, "9000 MB of disk"),
])
def test_a_job_asking_more_than_its_queue_takes_is_refused(limit: str, asked: dict[str, int], what: str) -> None:
    with pytest.raises(InvalidArgument, match=f"jobs\\[0\\] asks for {what}; queue local takes at most 8") as refused:
        check_queue_limits([_spec(**asked)], {"local": _queue(**{limit: 8})})
    assert "jobs[0].resources" in str(refused.value.to_status())


def test_a_limit_of_zero_is_no_limit_and_the_limit_itself_fits() -> None:
    check_queue_limits([_spec(cores=64, memory_mb=10**6)], {"local": _queue()})
    check_queue_limits([_spec(cores=8)], {"local": _queue(max_cores=8)})


def test_a_new_job_is_activated_at_its_first_attempt_on_no_pilot() -> None:
    job = new_job(_spec(priority=5, task_id=3, label="l"), owner="alice", vo="atlas", request_id="", now=NOW)
    assert (job.state, job.attempt, job.max_attempts, job.pilot_id, job.kill_requested) == (
        JobState.ACTIVATED, 1, 2, "", False)
    assert (job.owner, job.vo, job.priority, job.task_id, job.label, job.request_id) == (
        "alice", "atlas", 5, 3, "l", None)
    assert job.create_time == job.state_time == job.update_time == NOW
    assert (job.start_time, job.end_time, job.heartbeat_time) == (None, None, None)
    event = submitted_event(job)
    assert (event.state, event.previous_state, event.reason, event.time) == (JobState.ACTIVATED, None, "submitted",
                                                                              NOW)


def test_inputs_are_ready_outputs_defined_and_files_go_to_the_queues_storage_unless_named() -> None:
    spec = _spec(files=[FileSpec("in.root", "input"), FileSpec("out.root", "output"),
                        FileSpec("log.tgz", "log", storage_element="file:///elsewhere")])
    files = new_files(9, spec, "file:///se")
    assert [(f.job_id, f.lfn, f.status, f.storage_element, f.attempt) for f in files] == [
        (9, "in.root", "ready", "file:///se", 0), (9, "out.root", "defined", "file:///se", 0),
        (9, "log.tgz", "defined", "file:///elsewhere", 0),
    ]
