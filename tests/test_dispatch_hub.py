"""The dispatch hub in process, over a real database, where the order of a pilot's messages can
be fixed exactly: a request sent with updates is taken once they are written, unless the
pilot asked otherwise meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from panda_runtime.service.db import DbRunner, make_engine
from server_svc.domain.dispatch import JobRequest
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.pilot_updates import PilotUpdate
from server_svc.domain.states import JobState
from server_svc.logic.dispatch_hub import DispatchHub, Session
from server_svc.servicers.convert import hello_from_proto, outgoing_to_proto, request_from_proto
from server_svc.settings import ServerSettings
from server_svc.store.commands import CommandStore
from server_svc.store.dispatch import DispatchStore
from server_svc.store.jobs import JobStore
from server_svc.store.pilots import PilotStore
from server_svc.store.queue_store import QueueStore
from server_svc.store.submission import SubmissionStore


def _spec(priority: int) -> JobSpec:
    return JobSpec(queue="local", command=["x"], environment={}, cores=1, memory_mb=100, walltime_seconds=60,
                   disk_mb=0, priority=priority, max_attempts=1)


async def _next(session: Session, timeout: float = 5.0) -> dispatch_pb2.ConnectResponse:
    """The next message on the session's outbox, as the servicer sends it."""
    message = await asyncio.wait_for(session.outbox.get(), timeout)
    assert message is not None and not isinstance(message, BaseException), message
    return outgoing_to_proto(message)


def _request(count: int) -> JobRequest:
    """A RequestJobs as the servicer hands it to the hub."""
    return request_from_proto(dispatch_pb2.RequestJobs(count=count))


@dataclass
class _Started:
    hub: DispatchHub
    session: Session
    engine: Engine
    jobs: JobStore
    first: int
    second: int

    def ending_updates(self) -> list[PilotUpdate]:
        """The pilot's RUNNING and FINISHED for the first job."""
        return [PilotUpdate(job_id=self.first, attempt=1, state=state, pilot_id="pilot-1", queues=frozenset({"local"}))
                for state in (JobState.RUNNING, JobState.FINISHED)]


@contextlib.asynccontextmanager
async def _pilot_holding_the_first_of_two_jobs(database_url: str) -> AsyncIterator[_Started]:
    """A hub over a real database with two jobs, and a pilot that asked for one and got the
    first (the one of higher priority)."""
    engine = make_engine(database_url)
    jobs, queues = JobStore(engine), QueueStore(engine)
    queues.create({"queue_id": "local", "status": "online"})
    first, second = (job.job_id for job in SubmissionStore(engine).submit([_spec(9), _spec(1)], owner="alice"))
    db = DbRunner(engine)
    hub = DispatchHub(
        ServerSettings(dispatch_poll_seconds=0.1), db, DispatchStore(engine), CommandStore(engine), queues,
        PilotStore(engine),
    )
    hub.start()
    try:
        hello = dispatch_pb2.Hello(pilot_id="pilot-1", queue="local", node="n")
        session = await hub.connect(hello_from_proto(hello, "pilot-1", "panda-pilot", frozenset({"local"})))
        hub.request_jobs(session, _request(1))
        assert [j.job_id for j in (await _next(session)).job_assignments.jobs] == [first]
        yield _Started(hub, session, engine, jobs, first, second)
    finally:
        await hub.stop()
        db.close()


async def _finish_first_job_then(
    database_url: str, then: str
) -> tuple[list[dispatch_pb2.ConnectResponse], JobStore, int, int]:
    """A pilot runs the first of two jobs and ends it with a request for more; `then` is what it
    sends right behind, before anything was written: "nothing" or "withdraw" (count 0). Returns
    the messages the pilot got after its final update (sent as seq 7), and the two jobs' ids."""
    async with _pilot_holding_the_first_of_two_jobs(database_url) as run:
        # One event-loop step: the two messages are read before the update batch is written.
        run.hub.submit_updates(run.session, 7, run.ending_updates(), _request(1))
        if then == "withdraw":
            run.hub.request_jobs(run.session, _request(0))
        received = [await _next(run.session)]
        with contextlib.suppress(TimeoutError):  # anything more that comes
            received.append(await _next(run.session, timeout=1.5))
        return received, run.jobs, run.first, run.second


def _acks(acks: Iterable[dispatch_pb2.UpdateAck]) -> list[tuple[int, int, int]]:
    return [(ack.seq, ack.job_id, ack.state) for ack in acks]


def test_a_request_sent_with_the_final_update_brings_the_next_job_and_the_ack(database_url: str) -> None:
    received, jobs, first, second = asyncio.run(_finish_first_job_then(database_url, "nothing"))
    assert [m.WhichOneof("message") for m in received] == ["job_assignments"]
    assert [j.job_id for j in received[0].job_assignments.jobs] == [second]
    assert _acks(received[0].job_assignments.acks) == [(7, first, job_pb2.Job.STATE_FINISHED)]
    assert jobs.get(second).state == JobState.SENT.value


def test_a_withdrawal_right_behind_a_request_sent_with_updates_wins(database_url: str) -> None:
    received, jobs, first, second = asyncio.run(_finish_first_job_then(database_url, "withdraw"))
    # The ack alone: an UpdateAcks of one.
    assert [m.WhichOneof("message") for m in received] == ["update_acks"]
    assert _acks(received[0].update_acks.acks) == [(7, first, job_pb2.Job.STATE_FINISHED)]
    assert jobs.get(second).state == JobState.ACTIVATED.value


class _ClaimFailsOnce(DispatchStore):
    """A store whose first claim fails inside the round's transaction, after the round's
    updates were sent to the database (on PostgreSQL in the same pipeline)."""

    failed = False

    def _claim_sqlite(self, conn, claim, now, activated_at):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            conn.execute(text("SELECT * FROM no_such_table"))
        return super()._claim_sqlite(conn, claim, now, activated_at)

    def _pg_claim(self, claim, now):  # type: ignore[no-untyped-def]
        if not self.failed:
            self.failed = True
            return text("SELECT * FROM no_such_table"), {}
        return super()._pg_claim(claim, now)


async def _round_fails_then_pilot_resends(database_url: str) -> dict[str, object]:
    """A pilot ends its first job and asks for the next; that round fails; the pilot resends.
    Returns what it got meanwhile, both jobs' states after the failure, and the reply to the
    resent updates."""
    async with _pilot_holding_the_first_of_two_jobs(database_url) as run:
        run.hub._dispatch = failing = _ClaimFailsOnce(run.engine)
        run.hub.submit_updates(run.session, 7, run.ending_updates(), _request(1))
        # The round fails: nothing of it is kept, and nothing is acknowledged.
        silent = []
        with contextlib.suppress(TimeoutError):
            silent.append((await _next(run.session, timeout=0.5)).WhichOneof("message"))
        assert failing.failed
        states = (run.jobs.get(run.first).state, run.jobs.get(run.second).state)
        # The pilot resends its final update (it does after a while when no ack came).
        run.hub.submit_updates(run.session, 8, run.ending_updates(), _request(1))
        reply = (await _next(run.session)).job_assignments
        return {
            "meanwhile": silent, "states": states,
            "acks": [(a.seq, a.job_id, a.status.code, a.state) for a in reply.acks],
            "jobs": [j.job_id for j in reply.jobs], "first": run.first, "second": run.second,
        }


def test_a_failed_round_keeps_none_of_its_updates_and_the_resent_ones_go_through(database_url: str) -> None:
    run = asyncio.run(_round_fails_then_pilot_resends(database_url))
    assert run["meanwhile"] == []
    # The first job is where it was before the round (sent), and the next one was not claimed.
    assert run["states"] == (JobState.SENT.value, JobState.ACTIVATED.value)
    assert run["acks"] == [(8, run["first"], 0, job_pb2.Job.STATE_FINISHED)]
    assert run["jobs"] == [run["second"]]
