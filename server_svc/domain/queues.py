"""Queues: where jobs run, whether their pilots get jobs, and what a job may ask of one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from panda_runtime.service.errors import InvalidArgument, NotFound
from server_svc.domain.job_specs import JobSpec

__all__ = ["DISPATCHING_STATUSES", "QUEUE_STATUSES", "Queue", "check_queue_limits"]

QUEUE_STATUSES = ("online", "offline", "test", "brokeroff")
# Statuses whose pilots get jobs.
DISPATCHING_STATUSES = frozenset({"online", "test", "brokeroff"})


@dataclass(slots=True)
class Queue:
    queue_id: str
    status: str  # one of QUEUE_STATUSES
    max_cores: int  # the most a job may ask for; 0 = no limit
    max_memory_mb: int
    max_walltime_seconds: int
    max_disk_mb: int
    storage_element: str  # where its jobs' outputs go, unless a job names another
    description: str
    create_time: datetime
    update_time: datetime
    job_counts: dict[str, int] = field(default_factory=dict)  # by state, when asked for


def check_queue_limits(specs: Sequence[JobSpec], queues: Mapping[str, Queue]) -> None:
    """Refuse a submission naming a queue that does not exist (`queues` holds those that do),
    or a job asking for more than its queue takes; the error names the job (`jobs[i]`)."""
    for index, spec in enumerate(specs):
        queue = queues.get(spec.queue)
        if queue is None:
            raise NotFound(
                f"jobs[{index}]: queue {spec.queue} not found", resource_type="queue", resource_name=spec.queue
            )
        for asked, limit, what in (
            (spec.cores, queue.max_cores, "cores"),
            (spec.memory_mb, queue.max_memory_mb, "MB of memory"),
            (spec.walltime_seconds, queue.max_walltime_seconds, "s of walltime"),
            (spec.disk_mb, queue.max_disk_mb, "MB of disk"),
        ):
            if limit and asked > limit:
                raise InvalidArgument(
                    f"jobs[{index}] asks for {asked} {what}; queue {spec.queue} takes at most {limit}",
                    field=f"jobs[{index}].resources",
                )
