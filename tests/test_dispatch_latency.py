"""`panda_dispatch_latency_seconds` measures what its help says: per job, from the later of the
job becoming activated and the pilot asking for work, to the job being sent. A pilot's idle
wait for work that did not exist yet is not in it, nor a job's wait for a pilot that had not
asked. The hub runs in process over a real database (SQLite and PostgreSQL); each case bounds
the measure by what the test itself saw (no time limits: a slow machine passes too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from prometheus_client import REGISTRY

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda_runtime.service.db import DbRunner, make_engine
from server_svc.domain.dispatch import dispatch_latency
from server_svc.domain.job_specs import JobSpec
from server_svc.logic.dispatch_hub import DispatchHub, Session
from server_svc.servicers.convert import hello_from_proto, request_from_proto
from server_svc.settings import ServerSettings
from server_svc.store.commands import CommandStore
from server_svc.store.dispatch import DispatchStore
from server_svc.store.pilots import PilotStore
from server_svc.store.queue_store import QueueStore
from server_svc.store.submission import SubmissionStore

# The time the pilot idles, or the job waits, before the other side comes.
IDLE_SECONDS = 1.0
# Databases keep microseconds; the test's clock reads finer.
CLOCK_GRAIN = 1e-3


def _latencies() -> tuple[float, float]:
    """(observations, their sum) of the histogram so far."""
    count = REGISTRY.get_sample_value("panda_dispatch_latency_seconds_count") or 0.0
    total = REGISTRY.get_sample_value("panda_dispatch_latency_seconds_sum") or 0.0
    return count, total


@dataclass
class _Hub:
    hub: DispatchHub
    submissions: SubmissionStore

    def submit(self) -> None:
        spec = JobSpec(queue="local", command=["x"], environment={}, cores=1, memory_mb=100, walltime_seconds=60,
                       disk_mb=0, priority=1, max_attempts=1)
        self.submissions.submit([spec], owner="alice")
        self.hub.wake()

    async def pilot_asks(self, count: int = 1) -> Session:
        hello = dispatch_pb2.Hello(pilot_id="pilot-1", queue="local", node="n")
        session = await self.hub.connect(hello_from_proto(hello, "pilot-1", "panda-pilot", frozenset({"local"})))
        self.hub.request_jobs(session, request_from_proto(dispatch_pb2.RequestJobs(count=count)))
        return session


@asynccontextmanager
async def _hub(database_url: str) -> AsyncIterator[_Hub]:
    engine = make_engine(database_url)
    queues = QueueStore(engine)
    queues.create({"queue_id": "local", "status": "online"})
    db = DbRunner(engine)
    hub = DispatchHub(ServerSettings(dispatch_poll_seconds=0.1), db, DispatchStore(engine), CommandStore(engine),
                      queues, PilotStore(engine))
    hub.start()
    try:
        yield _Hub(hub, SubmissionStore(engine))
    finally:
        await hub.stop()
        db.close()


async def _job(session: Session) -> None:
    message = await asyncio.wait_for(session.outbox.get(), 30)
    assert message is not None and not isinstance(message, BaseException) and getattr(message, "jobs", None)


async def _idle_pilot_then_a_job(database_url: str) -> tuple[float, float, float]:
    async with _hub(database_url) as run:
        session = await run.pilot_asks()
        await asyncio.sleep(IDLE_SECONDS)  # nothing to do: the pilot idles
        before = _latencies()
        submitted = time.time()
        run.submit()
        await _job(session)
        received = time.time()
        after = _latencies()
        return after[0] - before[0], after[1] - before[1], received - submitted


async def _waiting_job_then_a_pilot(database_url: str) -> tuple[float, float, float]:
    async with _hub(database_url) as run:
        run.submit()
        await asyncio.sleep(IDLE_SECONDS)  # no pilot yet: the job waits
        before = _latencies()
        asked = time.time()
        session = await run.pilot_asks()
        await _job(session)
        received = time.time()
        after = _latencies()
        return after[0] - before[0], after[1] - before[1], received - asked


def test_a_pilot_s_idle_wait_is_not_dispatch_latency(database_url: str) -> None:
    observed, latency, seen = asyncio.run(_idle_pilot_then_a_job(database_url))
    assert observed == 1
    # From the job's activation (after `submitted`) to its sending (before `received`): the
    # pilot's idle second before it is not counted.
    assert 0 <= latency <= seen + CLOCK_GRAIN


def test_a_job_s_wait_for_a_pilot_that_had_not_asked_is_not_dispatch_latency(database_url: str) -> None:
    observed, latency, seen = asyncio.run(_waiting_job_then_a_pilot(database_url))
    assert observed == 1
    assert 0 <= latency <= seen + CLOCK_GRAIN


def test_latency_runs_from_the_later_of_ready_and_asked_to_sent() -> None:
    assert dispatch_latency(activated_at=100.0, asked_at=40.0, sent_at=100.25) == 0.25
    assert dispatch_latency(activated_at=40.0, asked_at=100.0, sent_at=100.5) == 0.5
    assert dispatch_latency(activated_at=100.0, asked_at=100.0, sent_at=101.0) == 1.0
    # Another replica's clock ahead of ours: never below 0.
    assert dispatch_latency(activated_at=102.0, asked_at=40.0, sent_at=101.0) == 0.0
