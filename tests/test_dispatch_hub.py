"""The dispatch hub in process, over a real database, where the order of a pilot's messages can
be fixed exactly: a request sent with updates is taken once they are written, unless the
pilot asked otherwise meanwhile."""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import text

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from panda_runtime.config import Settings
from panda_runtime.db import DbRunner, make_engine
from server_svc.dispatcher import DispatchHub, Session
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.states import JobState
from server_svc.store.job_store import JobStore, PilotUpdate
from server_svc.store.queue_store import QueueStore


def _spec(priority: int) -> JobSpec:
    return JobSpec(queue="local", command=["x"], environment={}, cores=1, memory_mb=100, walltime_seconds=60,
                   disk_mb=0, priority=priority, max_attempts=1)


async def _next(session: Session, timeout: float = 5.0) -> dispatch_pb2.ConnectResponse:
    message = await asyncio.wait_for(session.outbox.get(), timeout)
    assert isinstance(message, dispatch_pb2.ConnectResponse), message
    return message


async def _finish_first_job_then(database_url: str, then: str) -> tuple[list[str], JobStore, int]:
    """A pilot runs the first of two jobs and ends it with a request for more; `then` is what it
    sends right behind, before anything was written: "nothing" or "withdraw" (count 0). Returns
    the kinds of messages the pilot got after its final update, and the second job's id."""
    engine = make_engine(database_url)
    jobs, queues = JobStore(engine), QueueStore(engine)
    queues.create({"queue_id": "local", "status": "online"})
    first, second = (row["job_id"] for row in jobs.submit([_spec(9), _spec(1)], owner="alice"))
    db = DbRunner(engine)
    hub = DispatchHub(Settings(dispatch_poll_seconds=0.1), db, jobs, queues)
    hub.start()
    try:
        session = await hub.connect(dispatch_pb2.Hello(pilot_id="pilot-1", queue="local", node="n"))
        hub.request_jobs(session, dispatch_pb2.RequestJobs(count=1))
        assert [j.job_id for j in (await _next(session)).job_assignments.jobs] == [first]
        running = PilotUpdate(job_id=first, attempt=1, state=JobState.RUNNING, pilot_id="pilot-1")
        finished = PilotUpdate(job_id=first, attempt=1, state=JobState.FINISHED, pilot_id="pilot-1")
        # One event-loop step: the two messages are read before the update batch is written.
        hub.submit_updates(session, 7, [running, finished], dispatch_pb2.RequestJobs(count=1))
        if then == "withdraw":
            hub.request_jobs(session, dispatch_pb2.RequestJobs(count=0))
        received = [(await _next(session)).WhichOneof("message")]
        with contextlib.suppress(TimeoutError):  # anything more that comes
            received.append((await _next(session, timeout=1.5)).WhichOneof("message"))
        return received, jobs, second
    finally:
        await hub.stop()
        db.close()


def test_a_request_sent_with_the_final_update_brings_the_next_job_and_the_ack(database_url: str) -> None:
    received, jobs, second = asyncio.run(_finish_first_job_then(database_url, "nothing"))
    assert received == ["job_assignments"]
    assert jobs.get(second)["state"] == JobState.SENT.value


def test_a_withdrawal_right_behind_a_request_sent_with_updates_wins(database_url: str) -> None:
    received, jobs, second = asyncio.run(_finish_first_job_then(database_url, "withdraw"))
    assert received == ["update_ack"]
    assert jobs.get(second)["state"] == JobState.ACTIVATED.value


class _ClaimFailsOnce(JobStore):
    """A store whose first claim fails inside the round's transaction, after the round's
    updates were sent to the database (on PostgreSQL in the same pipeline)."""

    failed = False

    def _claim_sqlite(self, conn, claim, now):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            conn.execute(text("SELECT * FROM no_such_table"))
        return super()._claim_sqlite(conn, claim, now)

    def _pg_claim(self, claim, now):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            return text("SELECT * FROM no_such_table"), {}
        return super()._pg_claim(claim, now)


async def _round_fails_then_pilot_resends(database_url: str) -> dict[str, object]:
    """A pilot ends its first job and asks for the next; that round fails; the pilot resends.
    Returns what it got meanwhile, both jobs' states after the failure, and the reply to the
    resent updates."""
    engine = make_engine(database_url)
    queues = QueueStore(engine)
    queues.create({"queue_id": "local", "status": "online"})
    seed = JobStore(engine)
    first, second = (row["job_id"] for row in seed.submit([_spec(9), _spec(1)], owner="alice"))
    db = DbRunner(engine)
    hub = DispatchHub(Settings(dispatch_poll_seconds=0.1), db, seed, queues)
    hub.start()
    try:
        session = await hub.connect(dispatch_pb2.Hello(pilot_id="pilot-1", queue="local", node="n"))
        hub.request_jobs(session, dispatch_pb2.RequestJobs(count=1))
        assert [j.job_id for j in (await _next(session)).job_assignments.jobs] == [first]
        hub._jobs = failing = _ClaimFailsOnce(engine)
        running = PilotUpdate(job_id=first, attempt=1, state=JobState.RUNNING, pilot_id="pilot-1")
        finished = PilotUpdate(job_id=first, attempt=1, state=JobState.FINISHED, pilot_id="pilot-1")
        hub.submit_updates(session, 7, [running, finished], dispatch_pb2.RequestJobs(count=1))
        # The round fails: nothing of it is kept, and nothing is acknowledged.
        silent = []
        with contextlib.suppress(TimeoutError):
            silent.append((await _next(session, timeout=0.5)).WhichOneof("message"))
        assert failing.failed
        states = (seed.get(first)["state"], seed.get(second)["state"])
        # The pilot resends its final update (it does after a while when no ack came).
        hub.submit_updates(session, 8, [running, finished], dispatch_pb2.RequestJobs(count=1))
        reply = (await _next(session)).job_assignments
        return {
            "meanwhile": silent, "states": states,
            "acks": [(a.seq, a.job_id, a.status.code, a.state) for a in reply.acks],
            "jobs": [j.job_id for j in reply.jobs], "first": first, "second": second,
        }
    finally:
        await hub.stop()
        db.close()


def test_a_failed_round_keeps_none_of_its_updates_and_the_resent_ones_go_through(database_url: str) -> None:
    run = asyncio.run(_round_fails_then_pilot_resends(database_url))
    assert run["meanwhile"] == []
    # The first job is where it was before the round (sent), and the next one was not claimed.
    assert run["states"] == (JobState.SENT.value, JobState.ACTIVATED.value)
    assert run["acks"] == [(8, run["first"], 0, job_pb2.Job.STATE_FINISHED)]
    assert run["jobs"] == [run["second"]]
