"""The dispatch hub: pilots' streams, their credits, the claiming of jobs for them, the
batched writing of their updates, and commands going back down the streams.

Claims and updates are batched on purpose: one query claims jobs for every waiting pilot of
a queue, and one transaction writes every update that arrived while the previous one ran."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import Gauge, Histogram

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda_runtime.config import Settings
from panda_runtime.db import DbRunner
from panda_runtime.errors import ok_status
from panda_runtime.notify import Notifier
from server_svc.domain.states import FINAL_STATES, JobState
from server_svc.servicers.convert import job_to_proto, state_to_proto
from server_svc.store.job_store import JobStore, PilotUpdate, UpdateOutcome
from server_svc.store.queue_store import DISPATCHING_STATUSES, QueueStore

log = logging.getLogger("panda.dispatch")

PILOTS_CONNECTED = Gauge("panda_pilots_connected", "Pilot streams connected to this server.", ["queue"])
DISPATCH_LATENCY = Histogram(
    "panda_dispatch_latency_seconds",
    "From a pilot asking for work to a job pushed on its stream, when work was waiting.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPDATE_BATCH = Histogram(
    "panda_pilot_update_batch_size", "Pilot updates written per transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
_COMMAND_KINDS = {"kill": dispatch_pb2.Command.KIND_KILL, "soft_kill": dispatch_pb2.Command.KIND_SOFT_KILL,
                  "debug": dispatch_pb2.Command.KIND_DEBUG}
_MAX_UPDATE_BATCH = 2000
_OK = ok_status()


@dataclass(frozen=True)
class _RequestAfterUpdates:
    """A RequestJobs that came with updates, and its place among the pilot's requests."""

    request: dispatch_pb2.RequestJobs
    number: int


@dataclass(eq=False)
class Session:
    """One pilot stream."""

    pilot_id: str
    queue: str
    node: str
    cores: int
    memory_mb: int
    walltime_seconds: int
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outbox: asyncio.Queue[dispatch_pb2.ConnectResponse | BaseException | None] = field(
        default_factory=asyncio.Queue
    )
    credits: int = 0
    waiting_since: float = 0.0
    held: set[int] = field(default_factory=set)
    closed: bool = False
    # Acknowledgements held back to travel with the next jobs (JobUpdates.request_jobs).
    pending_acks: list[dispatch_pb2.UpdateAck] = field(default_factory=list)
    # Counts the pilot's requests as they arrive: a request sent with updates is taken after
    # they are written, unless a newer one (a withdrawal, say) arrived meanwhile.
    requests_received: int = 0

    def send(self, message: dispatch_pb2.ConnectResponse) -> None:
        self.outbox.put_nowait(message)

    def end(self, error: BaseException | None = None) -> None:
        self.outbox.put_nowait(error)

    def send_acks(self, acks: list[dispatch_pb2.UpdateAck]) -> None:
        if len(acks) == 1:
            self.send(dispatch_pb2.ConnectResponse(update_ack=acks[0]))
        elif acks:
            self.send(dispatch_pb2.ConnectResponse(update_acks=dispatch_pb2.UpdateAcks(acks=acks)))

    def take_acks(self) -> list[dispatch_pb2.UpdateAck]:
        acks, self.pending_acks = self.pending_acks, []
        return acks


class DispatchHub:
    def __init__(self, settings: Settings, db: DbRunner, jobs: JobStore, queues: QueueStore) -> None:
        self._settings = settings
        self._db = db
        self._jobs = jobs
        self._queues = queues
        self._sessions: dict[str, Session] = {}  # by pilot id
        self._wake = asyncio.Event()
        # Updates in arrival order, with the requests sent along with them.
        self._updates: asyncio.Queue[tuple[Session, int, PilotUpdate | _RequestAfterUpdates]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._queue_status: dict[str, str] = {}
        self._queue_status_time = 0.0
        # Notified whenever job events were written: WatchJobs streams wait on it.
        self.events_written = Notifier()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._dispatch_loop(), name="dispatch"),
            asyncio.create_task(self._update_loop(), name="updates"),
            asyncio.create_task(self._command_loop(), name="commands"),
        ]

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            session.end()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def connected(self, queue: str = "") -> int:
        return sum(1 for s in self._sessions.values() if not queue or s.queue == queue)

    # -- sessions ------------------------------------------------------------------------

    async def connect(self, hello: dispatch_pb2.Hello) -> Session:
        resources = hello.resources
        session = Session(
            pilot_id=hello.pilot_id, queue=hello.queue, node=hello.node, cores=resources.cores,
            memory_mb=resources.memory_mb, walltime_seconds=resources.walltime_seconds,
        )
        session.held = {held.job_id for held in hello.held_jobs}
        previous = self._sessions.get(hello.pilot_id)
        if previous is not None:
            # The pilot reconnected before we noticed its old stream die.
            previous.closed = True
            previous.end()
        self._sessions[hello.pilot_id] = session
        PILOTS_CONNECTED.labels(session.queue).inc()
        # Jobs sent to this pilot that it does not hold never reached it: they go back.
        lost = [job_id for job_id, _ in await self._db.run(self._jobs.sent_to, hello.pilot_id)
                if job_id not in session.held]
        if lost:
            await self._db.run(self._jobs.release, lost, "pilot reconnected without the job")
            self.events_written.notify()
            self.wake()
        await self.deliver_commands([hello.pilot_id])
        log.info("pilot %s connected for queue %s from %s (%s)", hello.pilot_id, hello.queue, hello.node,
                 session.session_id)
        return session

    async def goodbye(self, session: Session) -> None:
        """The pilot leaves: jobs sent to it that it never started go back to activated."""
        session.credits = 0
        unstarted = [job_id for job_id, _ in await self._db.run(self._jobs.sent_to, session.pilot_id)]
        if unstarted:
            await self._db.run(self._jobs.release, unstarted, "pilot left before starting the job")
            self.events_written.notify()
            self.wake()

    def disconnect(self, session: Session) -> None:
        session.closed = True
        if self._sessions.get(session.pilot_id) is session:
            del self._sessions[session.pilot_id]
        PILOTS_CONNECTED.labels(session.queue).dec()
        log.info("pilot %s disconnected (%s)", session.pilot_id, session.session_id)

    def request_jobs(self, session: Session, request: dispatch_pb2.RequestJobs) -> None:
        session.requests_received += 1
        self._take_request(session, request)

    def _take_request(self, session: Session, request: dispatch_pb2.RequestJobs) -> None:
        if request.HasField("resources"):
            offer = request.resources
            session.cores = offer.cores or session.cores
            session.memory_mb = offer.memory_mb or session.memory_mb
            session.walltime_seconds = offer.walltime_seconds or session.walltime_seconds
        was_waiting = session.credits > 0
        session.credits = max(0, request.count)
        if session.credits and not was_waiting:
            session.waiting_since = time.perf_counter()
        if session.credits:
            self.wake()

    def queues_changed(self) -> None:
        """A queue was added or changed through this server: the next round reads statuses afresh
        (other servers' caches catch up within seconds; the claim itself checks the status)."""
        self._queue_status_time = 0.0
        self.wake()

    def wake(self) -> None:
        """New work may be there (submitted, retried, released) or pilots want some."""
        self._wake.set()

    # -- claiming ------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.dispatch_poll_seconds)
            self._wake.clear()
            try:
                await self._dispatch_round()
            except Exception:
                log.exception("dispatch round failed; retrying")
                await asyncio.sleep(1)

    async def _statuses(self) -> dict[str, str]:
        if time.monotonic() - self._queue_status_time > 2.0:
            records = await self._db.run(self._queues.statuses)
            self._queue_status = {name: r.status for name, r in records.items()}
            self._queue_status_time = time.monotonic()
        return self._queue_status

    async def _dispatch_round(self) -> None:
        waiting = [s for s in self._sessions.values() if s.credits > 0 and not s.closed]
        if not waiting:
            return
        statuses = await self._statuses()
        groups: dict[tuple[str, int, int, int], list[Session]] = defaultdict(list)
        for session in waiting:
            if statuses.get(session.queue) in DISPATCHING_STATUSES:
                groups[(session.queue, session.cores, session.memory_mb, session.walltime_seconds)].append(session)
        for (queue, cores, memory_mb, walltime), group in groups.items():
            claims = [(s.pilot_id, s.node, s.credits) for s in group]
            assigned = await self._db.run(self._jobs.claim, queue, (cores, memory_mb, walltime), claims)
            if not assigned:
                continue
            self.events_written.notify()
            now = time.perf_counter()
            for session in group:
                jobs = assigned.get(session.pilot_id, [])
                if not jobs:
                    continue
                if session.closed or self._sessions.get(session.pilot_id) is not session:
                    await self._db.run(self._jobs.release, [j["job_id"] for j in jobs], "pilot stream closed")
                    self.wake()
                    continue
                session.held.update(j["job_id"] for j in jobs)
                session.credits = max(0, session.credits - len(jobs))
                DISPATCH_LATENCY.observe(now - session.waiting_since)
                session.waiting_since = now
                session.send(
                    dispatch_pb2.ConnectResponse(
                        job_assignments=dispatch_pb2.JobAssignments(
                            jobs=[job_to_proto(j) for j in jobs], acks=session.take_acks()
                        )
                    )
                )
        # Pilots left waiting (no job fits, or the queue is not dispatching) still get their acks.
        for session in waiting:
            if session.pending_acks:
                session.send_acks(session.take_acks())

    # -- updates -------------------------------------------------------------------------

    def submit_updates(
        self, session: Session, seq: int, updates: list[PilotUpdate],
        then_request: dispatch_pb2.RequestJobs | None = None,
    ) -> None:
        """Queue a message's updates for writing; `then_request` (sent with them) takes effect
        once they are written, and their acknowledgements then go out with the next jobs."""
        for update in updates:
            self._updates.put_nowait((session, seq, update))
        if then_request is not None:
            session.requests_received += 1
            self._updates.put_nowait((session, seq, _RequestAfterUpdates(then_request, session.requests_received)))

    async def _update_loop(self) -> None:
        while True:
            batch = [await self._updates.get()]
            while len(batch) < _MAX_UPDATE_BATCH and not self._updates.empty():
                batch.append(self._updates.get_nowait())
            updates = [(session, seq, u) for session, seq, u in batch if isinstance(u, PilotUpdate)]
            requests = {
                session: late.request for session, _, late in batch
                if isinstance(late, _RequestAfterUpdates) and late.number == session.requests_received
            }
            await self._write_updates(updates, holding={s for s, r in requests.items() if r.count > 0})
            for session, request in requests.items():
                self._take_request(session, request)

    async def _write_updates(
        self, batch: list[tuple[Session, int, PilotUpdate]], holding: set[Session]
    ) -> None:
        """Write one batch and acknowledge it; acks of the sessions in `holding` wait for their jobs."""
        if not batch:
            return
        UPDATE_BATCH.observe(len(batch))
        try:
            outcomes, reactivated = await self._db.run(self._jobs.apply_updates, [u for _, _, u in batch])
        except Exception:
            log.exception("writing %d pilot updates failed; the pilots will resend", len(batch))
            return
        acks: dict[Session, list[dispatch_pb2.UpdateAck]] = defaultdict(list)
        for (session, seq, _), outcome in zip(batch, outcomes, strict=True):
            ack = self._acknowledgement(session, seq, outcome)
            if ack is not None:
                acks[session].append(ack)
        for session, session_acks in acks.items():
            if session in holding:
                session.pending_acks.extend(session_acks)
            else:
                session.send_acks(session_acks)
        self.events_written.notify()
        if reactivated:
            self.wake()

    @staticmethod
    def _acknowledgement(session: Session, seq: int, outcome: UpdateOutcome) -> dispatch_pb2.UpdateAck | None:
        final = bool(outcome.state) and JobState(outcome.state) in FINAL_STATES
        if outcome.error is None and not final:
            return None  # progress and heartbeats are not acknowledged one by one
        session.held.discard(outcome.job_id)
        return dispatch_pb2.UpdateAck(
            seq=seq, job_id=outcome.job_id, attempt=outcome.attempt,
            status=outcome.error.to_status() if outcome.error else _OK, state=state_to_proto(outcome.state),
        )

    # -- commands ------------------------------------------------------------------------

    async def deliver_commands(self, pilot_ids: list[str] | None = None) -> None:
        """Push pending commands to the pilots connected here; others get them from their replica."""
        connected = [p for p in (pilot_ids or list(self._sessions)) if p in self._sessions]
        if not connected:
            return
        pending = await self._db.run(self._jobs.pending_commands, connected)
        delivered = []
        for command in pending:
            session = self._sessions.get(command["pilot_id"])
            if session is None or session.closed:
                continue
            session.send(
                dispatch_pb2.ConnectResponse(
                    command=dispatch_pb2.Command(
                        job_id=command["job_id"], attempt=command["attempt"],
                        kind=_COMMAND_KINDS[command["kind"]], reason=command["reason"],
                    )
                )
            )
            delivered.append(command["command_id"])
        await self._db.run(self._jobs.mark_delivered, delivered)

    async def _command_loop(self) -> None:
        # Commands written by another replica reach our pilots within a poll interval.
        for _ in itertools.count():
            await asyncio.sleep(max(self._settings.dispatch_poll_seconds, 0.5))
            try:
                await self.deliver_commands()
            except Exception:
                log.exception("delivering commands failed")
