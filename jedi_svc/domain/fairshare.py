"""A simple fair share between users: a job's priority is its task's priority minus one point
for every JOBS_PER_POINT jobs its owner already has in flight (generated and not ended),
counting the jobs of the same batch as they are made. A user with thousands of jobs queued
thus sees their next jobs sorted behind another user's at the same task priority, and
nobody is starved. No I/O."""

from __future__ import annotations

__all__ = ["JOBS_PER_POINT", "job_priorities"]

JOBS_PER_POINT = 100


def job_priorities(task_priority: int, owner_jobs_in_flight: int, count: int,
                   jobs_per_point: int = JOBS_PER_POINT) -> list[int]:
    step = max(1, jobs_per_point)
    return [task_priority - (owner_jobs_in_flight + i) // step for i in range(count)]
