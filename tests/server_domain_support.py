"""Jobs for the server's domain tests: a typed record in any state, with no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from server_svc.domain.jobs import Job
from server_svc.domain.states import JobState

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)


def make_job(**changes: Any) -> Job:
    """A job running attempt 1 of 3 on pilot-1, unless `changes` say otherwise."""
    job = Job(
        job_id=7, owner="alice", vo="atlas", task_id=0, max_attempts=3, state=JobState.RUNNING, attempt=1,
        queue="local", state_time=EARLIER, update_time=EARLIER, heartbeat_time=EARLIER, start_time=EARLIER,
        end_time=None, exit_code=0, error_code=0, error_diag="", log_tail="", max_rss_mb=100, cpu_seconds=1.0,
        pilot_id="pilot-1", node="node-1", kill_requested=False,
    )
    return replace(job, **changes)
