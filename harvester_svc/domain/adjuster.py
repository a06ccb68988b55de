"""The worker adjuster's arithmetic, as Harvester's WorkerAdjuster does it: how many workers to
submit to each queue this cycle, and which limit decided it; and when a live worker has waited
or been silent too long and is to be killed. No I/O, no clock: the caller passes the counts
and `now`.

New workers for a queue are the smallest of these rooms, never below 0 (0 when it is offline):
- jobs: the jobs waiting for a worker, less the workers already queued for them. Pull (NoJob):
  the jobs activated on the server. Push: those plus the jobs harvester has fetched and not yet
  running, at most `nQueueLimitJob`; ManyToOne packs `nJobsPerWorker` jobs in a worker (rounded up);
- `nQueueLimitWorker` less the queued workers (submitted, ready);
- `maxWorkers` less the live workers (submitted, ready, running, idle);
- `maxNewWorkersPerCycle`, when it is above 0.
When two rooms are equal the first in that order is named: the demand before the limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from harvester_svc.domain.queue_config import QueueConfig, QueueStatus
from harvester_svc.domain.workers import ACTIVE_STATES, FINAL_STATES, QUEUED_STATES, WorkerState

__all__ = [
    "KillReason", "Limit", "QueueLoad", "WorkerDecision", "WorkerKill", "adjust_workers", "decide_new_workers",
    "worker_timeout",
]


class Limit(StrEnum):
    """What decided a queue's number of new workers."""

    OFFLINE = "queueStatus offline"
    # Pull: the activated jobs; push: those and the fetched ones not yet running.
    JOBS = "jobs waiting"
    N_QUEUE_LIMIT_JOB = "nQueueLimitJob"
    N_QUEUE_LIMIT_WORKER = "nQueueLimitWorker"
    MAX_WORKERS = "maxWorkers"
    MAX_NEW_WORKERS_PER_CYCLE = "maxNewWorkersPerCycle"


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """What the adjuster knows of one queue this cycle. Counts are never negative."""

    queue: QueueConfig
    # Jobs activated on the server for this queue, waiting for a pilot.
    activated_jobs: int
    # The queue's live and ended workers, counted by state (states not given count 0).
    workers: Mapping[WorkerState, int]
    # Push: jobs harvester has fetched and that are not running yet (held by queued workers or
    # waiting for one).
    fetched_jobs: int = 0


@dataclass(frozen=True, slots=True)
class WorkerDecision:
    queue: str
    new_workers: int
    limit: Limit

    @property
    def reason(self) -> str:
        """For operators: "limited by maxWorkers", "queueStatus offline"."""
        return self.limit.value if self.limit is Limit.OFFLINE else f"limited by {self.limit.value}"


def decide_new_workers(load: QueueLoad) -> WorkerDecision:
    queue = load.queue
    if queue.status is QueueStatus.OFFLINE:
        return WorkerDecision(queue.name, 0, Limit.OFFLINE)
    queued = active = 0
    for state, count in load.workers.items():
        if state in ACTIVE_STATES:
            active += count
        if state in QUEUED_STATES:
            queued += count
    jobs = load.activated_jobs
    limit = Limit.JOBS
    if queue.map_type.is_push:
        jobs += load.fetched_jobs
        if queue.n_queue_limit_job is not None and queue.n_queue_limit_job < jobs:
            jobs, limit = queue.n_queue_limit_job, Limit.N_QUEUE_LIMIT_JOB
    # Workers the jobs fill (ceiling division), less those already waiting for them.
    room = -(-jobs // queue.n_jobs_per_worker) - queued
    if queue.n_queue_limit_worker is not None and queue.n_queue_limit_worker - queued < room:
        room, limit = queue.n_queue_limit_worker - queued, Limit.N_QUEUE_LIMIT_WORKER
    if queue.max_workers - active < room:
        room, limit = queue.max_workers - active, Limit.MAX_WORKERS
    if 0 < queue.max_new_workers_per_cycle < room:
        room, limit = queue.max_new_workers_per_cycle, Limit.MAX_NEW_WORKERS_PER_CYCLE
    return WorkerDecision(queue.name, room if room > 0 else 0, limit)


def adjust_workers(loads: Iterable[QueueLoad]) -> list[WorkerDecision]:
    """One decision per queue, in the order given."""
    return [decide_new_workers(load) for load in loads]


class KillReason(StrEnum):
    QUEUED_TOO_LONG = "queued too long"
    HEARTBEAT_STOPPED = "heartbeat stopped"


@dataclass(frozen=True, slots=True)
class WorkerKill:
    reason: KillReason
    # The numbers behind it, for the worker's record and the log.
    detail: str


def worker_timeout(
    queue: QueueConfig,
    state: WorkerState,
    now: datetime,
    submitted_at: datetime,
    started_at: datetime | None = None,
    last_heartbeat_at: datetime | None = None,
) -> WorkerKill | None:
    """Whether a worker is to be killed, and why; None to leave it.

    A worker the batch system has not started (submitted) may wait `workerQueuedTimeoutSeconds`
    from its submission. Once started (ready, running, idle) it waits for its pilot instead: it
    may be silent `workerHeartbeatTimeoutSeconds` from its last sign of life (its pilot's last
    heartbeat, else its start, else its submission). An ended worker is never killed. Times are
    all aware or all naive, as the caller keeps them."""
    if state in FINAL_STATES:
        return None
    if state is WorkerState.SUBMITTED:
        waited = (now - submitted_at).total_seconds()
        if waited > queue.worker_queued_timeout_seconds:
            return WorkerKill(KillReason.QUEUED_TOO_LONG, f"queued for {waited:.0f} s, longer than "
                              f"workerQueuedTimeoutSeconds ({queue.worker_queued_timeout_seconds} s)")
        return None
    last_sign = max(time for time in (submitted_at, started_at, last_heartbeat_at) if time is not None)
    silent = (now - last_sign).total_seconds()
    if silent > queue.worker_heartbeat_timeout_seconds:
        since = "last heartbeat" if last_heartbeat_at is not None and last_sign == last_heartbeat_at else (
            "start" if started_at is not None and last_sign == started_at else "submission")
        return WorkerKill(KillReason.HEARTBEAT_STOPPED, f"no heartbeat for {silent:.0f} s since its {since}, "
                          f"longer than workerHeartbeatTimeoutSeconds ({queue.worker_heartbeat_timeout_seconds} s)")
    return None
