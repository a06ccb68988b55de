"""Brokerage: which queues a task's jobs may go to, and which one each job gets. No I/O.

A queue is a candidate when it is online, allowed by the task, and takes the job's cores,
memory, walltime and disk (a limit of 0 means none). Each job goes to the candidate with the
highest weight (running + 1) / (queued + 10), times (1 + LOCALITY_WEIGHT x the fraction of the
job's input bytes with a replica on the queue's storage element). A queue's queued count
grows with every job given to it, so a batch spreads over the queues as PanDA's does."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LOCALITY_WEIGHT", "QUEUED_STATES", "RUNNING_STATES", "Candidates", "JobRequest", "QueueInfo", "assign",
    "candidates", "locality",
]

LOCALITY_WEIGHT = 1.0

RUNNING_STATES = ("sent", "starting", "running", "holding", "transferring")
QUEUED_STATES = ("defined", "pending", "activated", "throttled")


@dataclass
class QueueInfo:
    queue_id: str
    status: str
    max_cores: int = 0
    max_memory_mb: int = 0
    max_walltime_seconds: int = 0
    max_disk_mb: int = 0
    storage_element: str = ""
    running: int = 0
    queued: int = 0

    def weight(self, locality: float) -> float:
        return (self.running + 1) / (self.queued + 10) * (1.0 + LOCALITY_WEIGHT * locality)


@dataclass(frozen=True)
class JobRequest:
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int


@dataclass
class Candidates:
    queues: list[QueueInfo]
    # Why each other queue was left out, for the task's history when none fits.
    rejected: dict[str, str] = field(default_factory=dict)

    def reason(self) -> str:
        if not self.rejected:
            return "no queue is registered"
        return "; ".join(f"{q}: {why}" for q, why in sorted(self.rejected.items()))


def candidates(
    queues: list[QueueInfo], request: JobRequest, *, allowed: list[str], excluded: list[str]
) -> Candidates:
    result = Candidates([])
    allowed_set, excluded_set = set(allowed), set(excluded)
    for queue in sorted(queues, key=lambda q: q.queue_id):
        why = ""
        if allowed_set and queue.queue_id not in allowed_set:
            why = "not among the task's queues"
        elif queue.queue_id in excluded_set:
            why = "excluded by the task"
        elif queue.status != "online":
            why = f"{queue.status}"
        else:
            for asked, limit, what in (
                (request.cores, queue.max_cores, "cores"),
                (request.memory_mb, queue.max_memory_mb, "MB memory"),
                (request.walltime_seconds, queue.max_walltime_seconds, "s walltime"),
                (request.disk_mb, queue.max_disk_mb, "MB disk"),
            ):
                if limit and asked > limit:
                    why = f"takes at most {limit} {what}, the task needs {asked}"
                    break
        if why:
            result.rejected[queue.queue_id] = why
        else:
            result.queues.append(queue)
    for name in sorted(allowed_set - {q.queue_id for q in queues}):
        result.rejected[name] = "no such queue"
    return result


def locality(input_replicas: list[tuple[int, list[str]]], storage_element: str) -> float:
    """Fraction of a job's input (by bytes; by files when sizes are unknown) held on `storage_element`."""
    if not input_replicas or not storage_element:
        return 0.0
    total = sum(size for size, _ in input_replicas)
    if total > 0:
        return sum(size for size, ses in input_replicas if storage_element in ses) / total
    return sum(1 for _, ses in input_replicas if storage_element in ses) / len(input_replicas)


def assign(queues: list[QueueInfo], jobs_inputs: list[list[tuple[int, list[str]]]]) -> list[QueueInfo]:
    """The queue for each job (same order), counting each assignment as queued on its queue."""
    chosen: list[QueueInfo] = []
    distinct_ses = {q.storage_element for q in queues}
    for inputs in jobs_inputs:
        local = {se: locality(inputs, se) for se in distinct_ses}
        best = max(queues, key=lambda q: (q.weight(local[q.storage_element]), _reverse(q.queue_id)))
        best.queued += 1
        chosen.append(best)
    return chosen


def _reverse(text: str) -> tuple[int, ...]:
    # Ties go to the queue whose name sorts first.
    return tuple(-ord(c) for c in text)
