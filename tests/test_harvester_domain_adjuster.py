"""The worker adjuster's arithmetic without a process: each limit, one at a time, is the one
that decides how many workers a queue gets, and says so; the bounds hold for any counts; the
worker timeouts kill what waited or was silent too long, and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harvester_svc.domain.adjuster import (
    KillReason,
    Limit,
    QueueLoad,
    WorkerDecision,
    adjust_workers,
    decide_new_workers,
    worker_timeout,
)
from harvester_svc.domain.queue_config import QueueConfig, load_queue_config
from harvester_svc.domain.workers import ACTIVE_STATES, QUEUED_STATES, WorkerState

W = WorkerState


def config(**fields: Any) -> QueueConfig:
    """One queue, "q": pull, maxWorkers 100, no other limit, unless `fields` say otherwise."""
    body = {"mapType": "NoJob", "maxWorkers": 100, "submitter": {"plugin": "local"}, **fields}
    return load_queue_config(json.dumps({"q": body}))["q"]


def decide(queue: QueueConfig, activated: int, workers: dict[WorkerState, int] | None = None,
           fetched: int = 0) -> tuple[int, Limit, str]:
    decision = decide_new_workers(QueueLoad(queue, activated, workers or {}, fetched))
    assert decision.queue == queue.name
    return decision.new_workers, decision.limit, decision.reason


# ---- each limit binding in turn -------------------------------------------------------------------------


def test_an_offline_queue_gets_no_worker_whatever_waits() -> None:
    assert decide(config(queueStatus="offline"), 500) == (0, Limit.OFFLINE, "queueStatus offline")


def test_pull_the_activated_jobs_less_the_queued_workers() -> None:
    queue = config()
    assert decide(queue, 7) == (7, Limit.JOBS, "limited by jobs waiting")
    # Submitted and ready workers are each waiting for one of those jobs; running ones are not.
    assert decide(queue, 7, {W.SUBMITTED: 2, W.READY: 1, W.RUNNING: 40, W.IDLE: 3}) == (
        4, Limit.JOBS, "limited by jobs waiting")
    assert decide(queue, 0) == (0, Limit.JOBS, "limited by jobs waiting")
    # More workers queued than jobs: none, never fewer than none.
    assert decide(queue, 2, {W.SUBMITTED: 5}) == (0, Limit.JOBS, "limited by jobs waiting")


def test_pull_n_queue_limit_worker_bounds_the_workers_waiting_in_the_batch_system() -> None:
    queue = config(nQueueLimitWorker=5)
    assert decide(queue, 50) == (5, Limit.N_QUEUE_LIMIT_WORKER, "limited by nQueueLimitWorker")
    assert decide(queue, 50, {W.SUBMITTED: 2, W.READY: 1, W.RUNNING: 10}) == (
        2, Limit.N_QUEUE_LIMIT_WORKER, "limited by nQueueLimitWorker")
    # Over the limit (it was lowered): none.
    assert decide(queue, 50, {W.SUBMITTED: 9}) == (0, Limit.N_QUEUE_LIMIT_WORKER, "limited by nQueueLimitWorker")


def test_pull_max_workers_bounds_the_live_workers() -> None:
    queue = config(maxWorkers=20)
    assert decide(queue, 50, {W.RUNNING: 12, W.IDLE: 2, W.SUBMITTED: 1, W.FINISHED: 500, W.FAILED: 9,
                              W.CANCELLED: 3, W.MISSED: 1}) == (5, Limit.MAX_WORKERS, "limited by maxWorkers")
    assert decide(queue, 50, {W.RUNNING: 25}) == (0, Limit.MAX_WORKERS, "limited by maxWorkers")
    assert decide(config(maxWorkers=0), 50) == (0, Limit.MAX_WORKERS, "limited by maxWorkers")


def test_pull_max_new_workers_per_cycle_bounds_one_cycle_and_zero_means_no_bound() -> None:
    assert decide(config(maxNewWorkersPerCycle=3), 50) == (
        3, Limit.MAX_NEW_WORKERS_PER_CYCLE, "limited by maxNewWorkersPerCycle")
    assert decide(config(maxNewWorkersPerCycle=0), 50) == (50, Limit.JOBS, "limited by jobs waiting")


def test_when_limits_tie_the_demand_is_named_before_the_limits_and_the_limits_in_order() -> None:
    assert decide(config(nQueueLimitWorker=5, maxNewWorkersPerCycle=5), 5)[1] is Limit.JOBS
    assert decide(config(maxWorkers=5, nQueueLimitWorker=5, maxNewWorkersPerCycle=5), 9)[1] is (
        Limit.N_QUEUE_LIMIT_WORKER)
    assert decide(config(maxWorkers=5, maxNewWorkersPerCycle=5), 9)[1] is Limit.MAX_WORKERS


def test_one_to_one_counts_the_fetched_jobs_too_and_n_queue_limit_job_bounds_them() -> None:
    queue = config(mapType="OneToOne")
    # 3 activated on the server and 4 fetched, 2 of which already sit in queued workers.
    assert decide(queue, 3, {W.SUBMITTED: 2}, fetched=4) == (5, Limit.JOBS, "limited by jobs waiting")
    limited = config(mapType="OneToOne", nQueueLimitJob=4)
    assert decide(limited, 3, {W.SUBMITTED: 2}, fetched=4) == (2, Limit.N_QUEUE_LIMIT_JOB, "limited by nQueueLimitJob")
    # A pull queue ignores what it is told was fetched: its pilots fetch their own.
    assert decide(config(), 3, fetched=40) == (3, Limit.JOBS, "limited by jobs waiting")


def test_many_to_one_packs_the_jobs_into_workers_rounded_up() -> None:
    queue = config(mapType="ManyToOne", nJobsPerWorker=4)
    assert decide(queue, 9) == (3, Limit.JOBS, "limited by jobs waiting")
    assert decide(queue, 8) == (2, Limit.JOBS, "limited by jobs waiting")
    assert decide(queue, 1) == (1, Limit.JOBS, "limited by jobs waiting")
    assert decide(queue, 6, {W.SUBMITTED: 1}, fetched=4) == (2, Limit.JOBS, "limited by jobs waiting")
    assert decide(config(mapType="ManyToOne", nJobsPerWorker=4, nQueueLimitJob=10), 30) == (
        3, Limit.N_QUEUE_LIMIT_JOB, "limited by nQueueLimitJob")


def test_every_queue_gets_its_decision_in_the_order_given() -> None:
    queues = load_queue_config(json.dumps({
        name: {"mapType": "NoJob", "maxWorkers": 10, "submitter": {"plugin": "local"}} for name in ("b", "a", "c")
    }))
    decisions = adjust_workers(QueueLoad(queues[name], jobs, {}) for name, jobs in (("c", 1), ("a", 20), ("b", 0)))
    assert decisions == [WorkerDecision("c", 1, Limit.JOBS), WorkerDecision("a", 10, Limit.MAX_WORKERS),
                         WorkerDecision("b", 0, Limit.JOBS)]


# ---- the bounds hold for any counts ----------------------------------------------------------------------

counts = st.integers(0, 200)


@st.composite
def loads(draw: st.DrawFn) -> QueueLoad:
    max_workers = draw(st.integers(0, 100))
    map_type = draw(st.sampled_from(["NoJob", "OneToOne", "ManyToOne"]))
    fields: dict[str, Any] = {
        "mapType": map_type, "maxWorkers": max_workers,
        "queueStatus": draw(st.sampled_from(["online", "online", "online", "offline"])),
        "nQueueLimitWorker": draw(st.none() | st.integers(0, max_workers)),
        "maxNewWorkersPerCycle": draw(st.integers(0, max_workers)),
    }
    if map_type != "NoJob":
        fields["nQueueLimitJob"] = draw(st.none() | counts)
    if map_type == "ManyToOne":
        fields["nJobsPerWorker"] = draw(st.integers(2, 10))
    workers = draw(st.dictionaries(st.sampled_from(list(WorkerState)), counts))
    return QueueLoad(config(**fields), draw(counts), workers, draw(counts))


@settings(max_examples=400, deadline=None)
@given(load=loads())
def test_no_decision_breaks_a_limit_and_the_named_limit_is_the_binding_one(load: QueueLoad) -> None:
    queue = load.queue
    decision = decide_new_workers(load)
    new = decision.new_workers
    assert new >= 0
    if queue.status.value == "offline":
        assert (new, decision.limit) == (0, Limit.OFFLINE)
        return
    queued = sum(count for state, count in load.workers.items() if state in QUEUED_STATES)
    active = sum(count for state, count in load.workers.items() if state in ACTIVE_STATES)
    jobs = load.activated_jobs + (load.fetched_jobs if queue.map_type.is_push else 0)
    # What each limit leaves room for; the decision is the smallest, and names it.
    rooms = {Limit.JOBS: -(-jobs // queue.n_jobs_per_worker) - queued, Limit.MAX_WORKERS: queue.max_workers - active}
    if queue.n_queue_limit_job is not None and queue.n_queue_limit_job < jobs:
        rooms[Limit.N_QUEUE_LIMIT_JOB] = -(-queue.n_queue_limit_job // queue.n_jobs_per_worker) - queued
        del rooms[Limit.JOBS]
    if queue.n_queue_limit_worker is not None:
        rooms[Limit.N_QUEUE_LIMIT_WORKER] = queue.n_queue_limit_worker - queued
    if queue.max_new_workers_per_cycle > 0:
        rooms[Limit.MAX_NEW_WORKERS_PER_CYCLE] = queue.max_new_workers_per_cycle
    assert new == max(0, min(rooms.values()))
    assert rooms[decision.limit] == min(rooms.values())
    # Stated as the operator reads them.
    assert active + new <= max(queue.max_workers, active)
    if queue.n_queue_limit_worker is not None:
        assert queued + new <= max(queue.n_queue_limit_worker, queued)
    if queue.max_new_workers_per_cycle:
        assert new <= queue.max_new_workers_per_cycle


@settings(max_examples=200, deadline=None)
@given(load=loads(), more=st.integers(1, 50))
def test_more_jobs_waiting_never_means_fewer_workers(load: QueueLoad, more: int) -> None:
    busier = QueueLoad(load.queue, load.activated_jobs + more, load.workers, load.fetched_jobs)
    assert decide_new_workers(busier).new_workers >= decide_new_workers(load).new_workers


# ---- the timeouts ------------------------------------------------------------------------------------------

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
TIMEOUTS = config(workerQueuedTimeoutSeconds=600, workerHeartbeatTimeoutSeconds=1800)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_a_worker_queued_too_long_is_killed() -> None:
    assert worker_timeout(TIMEOUTS, W.SUBMITTED, NOW, submitted_at=ago(600)) is None
    kill = worker_timeout(TIMEOUTS, W.SUBMITTED, NOW, submitted_at=ago(601))
    assert kill is not None and kill.reason is KillReason.QUEUED_TOO_LONG
    assert kill.detail == "queued for 601 s, longer than workerQueuedTimeoutSeconds (600 s)"


def test_a_started_worker_is_killed_when_its_pilot_stays_silent() -> None:
    # Started long after its submission: the heartbeat clock runs from its start.
    assert worker_timeout(TIMEOUTS, W.READY, NOW, submitted_at=ago(5000), started_at=ago(1800)) is None
    kill = worker_timeout(TIMEOUTS, W.READY, NOW, submitted_at=ago(5000), started_at=ago(1801))
    assert kill is not None and kill.reason is KillReason.HEARTBEAT_STOPPED
    assert kill.detail == ("no heartbeat for 1801 s since its start, longer than workerHeartbeatTimeoutSeconds "
                           "(1800 s)")
    # A recent heartbeat keeps it; an old one does not.
    assert worker_timeout(TIMEOUTS, W.RUNNING, NOW, ago(9000), ago(8000), last_heartbeat_at=ago(60)) is None
    kill = worker_timeout(TIMEOUTS, W.IDLE, NOW, ago(9000), ago(8000), last_heartbeat_at=ago(2000))
    assert kill is not None and kill.reason is KillReason.HEARTBEAT_STOPPED
    assert "since its last heartbeat" in kill.detail
    # Its start not known: from its submission.
    kill = worker_timeout(TIMEOUTS, W.RUNNING, NOW, submitted_at=ago(1900))
    assert kill is not None and "since its submission" in kill.detail


def test_a_started_worker_is_not_killed_for_its_time_in_the_queue() -> None:
    assert worker_timeout(TIMEOUTS, W.RUNNING, NOW, submitted_at=ago(100_000), started_at=ago(10)) is None


@pytest.mark.parametrize("state", [W.FINISHED, W.FAILED, W.CANCELLED, W.MISSED])
def test_an_ended_worker_is_never_killed(state: WorkerState) -> None:
    assert worker_timeout(TIMEOUTS, state, NOW, submitted_at=ago(10**6)) is None
