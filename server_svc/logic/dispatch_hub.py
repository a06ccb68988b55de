"""The dispatch hub: pilots' streams, their credits, the claiming of jobs for them, the
batched writing of their updates, and commands going back down the streams.

Work is done in rounds, back to back: one transaction writes every update that arrived while
the previous round ran, then claims jobs for every waiting pilot (one query per queue and
offer). A pilot that ends a job and asks for the next in one message gets the ack and the
job together, one round later.

The hub speaks domain types: a session's outbox carries `Assignment`, `Acknowledgements` and
`PilotCommand` objects, then None (the stream ends) or an exception (it ends with that
error); the servicer turns them into messages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Gauge, Histogram

from panda_runtime.service.db import DbRunner, log_failure
from panda_runtime.service.errors import PermissionDenied
from panda_runtime.service.notify import Notifier
from server_svc.domain.dispatch import (
    Acknowledgements,
    Assignment,
    Claim,
    JobRequest,
    Offer,
    PilotHello,
    UpdateAck,
    acknowledgement,
    dispatch_latency,
)
from server_svc.domain.pilot_updates import PilotUpdate
from server_svc.domain.queues import DISPATCHING_STATUSES
from server_svc.domain.user_actions import PilotCommand
from server_svc.logic.job_metrics import count_failures
from server_svc.settings import ServerSettings
from server_svc.store.commands import CommandStore
from server_svc.store.dispatch import DispatchStore
from server_svc.store.pilots import PilotStore
from server_svc.store.queue_store import QueueStore

__all__ = ["DispatchHub", "Outgoing", "Session"]

log = logging.getLogger("panda.dispatch")

PILOTS_CONNECTED = Gauge("panda_pilots_connected", "Pilot streams connected to this server.", ["queue"])
DISPATCH_LATENCY = Histogram(
    "panda_dispatch_latency_seconds",
    "Per job sent to a pilot: from the later of the job becoming activated and the pilot asking for work, "
    "to the job being handed to the pilot's stream.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
UPDATE_BATCH = Histogram(
    "panda_pilot_update_batch_size", "Pilot updates written per transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
_MAX_UPDATE_BATCH = 2000

# What a session's outbox carries: messages for the pilot, then None (the stream ends) or the
# error it ends with.
Outgoing = Assignment | Acknowledgements | PilotCommand | BaseException | None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %s", task.get_name(), task.exception())


@dataclass(frozen=True, slots=True)
class _RequestAfterUpdates:
    """A request that came with updates, its place among the pilot's requests, and when it
    arrived (Unix time)."""

    request: JobRequest
    number: int
    received: float


@dataclass(eq=False)
class Session:
    """One pilot stream."""

    pilot_id: str
    queue: str
    node: str
    offer: Offer
    # Who the stream's token says the pilot is, and the queues it names (its updates for jobs
    # of other queues are refused).
    subject: str = ""
    queues: frozenset[str] = frozenset()
    # The harvester worker the pilot runs in ("" for none): the jobs sent to it are its.
    worker_id: str = ""
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    outbox: asyncio.Queue[Outgoing] = field(default_factory=asyncio.Queue)
    credits: int = 0
    # Since when (Unix time) the pilot has been asking for work: set when its credits go from
    # none to some, kept while it has any.
    asked_at: float = 0.0
    held: set[int] = field(default_factory=set)
    closed: bool = False
    # Counts the pilot's requests as they arrive: a request sent with updates is taken after
    # they are written, unless a newer one (a withdrawal, say) arrived meanwhile.
    requests_received: int = 0
    # When the pilot's last message arrived (Unix time), and the last one written to its
    # identity's record: what spares its jobs from the lost-heartbeat rule.
    heard: float = field(default_factory=time.time)
    heard_written: float = 0.0

    def hear(self) -> None:
        """A message from the pilot arrived."""
        self.heard = time.time()

    def send(self, message: Assignment | Acknowledgements | PilotCommand) -> None:
        self.outbox.put_nowait(message)

    def end(self, error: BaseException | None = None) -> None:
        self.outbox.put_nowait(error)

    def send_acks(self, acks: list[UpdateAck]) -> None:
        """Acknowledgements that go alone, with no job."""
        if acks:
            self.send(Acknowledgements(acks))


class DispatchHub:
    def __init__(
        self, settings: ServerSettings, db: DbRunner, dispatch: DispatchStore, commands: CommandStore,
        queues: QueueStore, pilots: PilotStore,
    ) -> None:
        self._settings = settings
        self._db = db
        self._dispatch = dispatch
        self._commands = commands
        self._queues = queues
        self._pilots = pilots
        self._sessions: dict[str, Session] = {}  # by pilot id
        # Last messages of pilots whose streams closed before they were written.
        self._heard_unwritten: dict[str, float] = {}
        self._wake = asyncio.Event()
        # Updates in arrival order, with the requests sent along with them.
        self._updates: asyncio.Queue[tuple[Session, int, PilotUpdate | _RequestAfterUpdates]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._queue_status: dict[str, str] = {}
        self._queue_status_time = 0.0  # when the statuses were asked for; 0: never, or changed since
        self._queue_status_changed = 0.0
        self._status_reading: asyncio.Task[None] | None = None
        # Notified whenever job events were written: WatchJobs streams wait on it.
        self.events_written = Notifier()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._round_loop(), name="dispatch"),
            asyncio.create_task(self._command_loop(), name="commands"),
            asyncio.create_task(self._heard_loop(), name="pilots heard"),
        ]

    async def stop(self) -> None:
        for session in list(self._sessions.values()):
            session.end()
        if self._status_reading is not None:
            self._status_reading.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def connected(self, queue: str = "") -> int:
        return sum(1 for s in self._sessions.values() if not queue or s.queue == queue)

    # -- sessions ------------------------------------------------------------------------

    async def connect(self, hello: PilotHello) -> Session:
        """A stream of an admitted pilot (its id issued or resumed) opens."""
        session = Session(pilot_id=hello.pilot_id, queue=hello.queue, node=hello.node, offer=hello.offer,
                          subject=hello.subject, queues=hello.queues, worker_id=hello.worker_id)
        session.heard_written = session.heard  # admitting it wrote it
        session.held = set(hello.held_jobs)
        previous = self._sessions.get(hello.pilot_id)
        if previous is not None:
            # The pilot reconnected before we noticed its old stream die.
            previous.closed = True
            previous.end()
        self._sessions[hello.pilot_id] = session
        PILOTS_CONNECTED.labels(session.queue).inc()
        # Jobs sent to this pilot that it does not hold never reached it: they go back.
        lost = [job_id for job_id, _ in await self._db.run(self._dispatch.sent_to, hello.pilot_id)
                if job_id not in session.held]
        if lost:
            await self._db.run(self._dispatch.release, lost, "pilot reconnected without the job")
            self.events_written.notify()
            self.wake()
        await self.deliver_commands([hello.pilot_id])
        log.info("pilot %s connected for queue %s from %s (%s)", hello.pilot_id, hello.queue, hello.node,
                 session.session_id)
        return session

    async def goodbye(self, session: Session) -> None:
        """The pilot leaves: jobs sent to it that it never started go back to activated."""
        session.credits = 0
        unstarted = [job_id for job_id, _ in await self._db.run(self._dispatch.sent_to, session.pilot_id)]
        if unstarted:
            await self._db.run(self._dispatch.release, unstarted, "pilot left before starting the job")
            self.events_written.notify()
            self.wake()

    def disconnect(self, session: Session) -> None:
        session.closed = True
        if self._sessions.get(session.pilot_id) is session:
            del self._sessions[session.pilot_id]
            if session.heard > session.heard_written:
                self._heard_unwritten[session.pilot_id] = session.heard
        PILOTS_CONNECTED.labels(session.queue).dec()
        log.info("pilot %s disconnected (%s)", session.pilot_id, session.session_id)

    def request_jobs(self, session: Session, request: JobRequest) -> None:
        session.requests_received += 1
        self._take_request(session, request, time.time())

    def _take_request(self, session: Session, request: JobRequest, received: float) -> None:
        if request.offer is not None:
            session.offer = session.offer.updated_by(request.offer)
        was_waiting = session.credits > 0
        session.credits = max(0, request.count)
        if session.credits and not was_waiting:
            session.asked_at = received
        if session.credits:
            self.wake()

    def queues_changed(self) -> None:
        """A queue was added or changed through this server: the next round reads statuses afresh
        (other servers' caches catch up within seconds; the claim itself checks the status)."""
        self._queue_status_time = 0.0
        self._queue_status_changed = time.monotonic()
        self.wake()

    def wake(self) -> None:
        """New work may be there (submitted, retried, released) or pilots want some."""
        self._wake.set()

    # -- dispatch rounds -----------------------------------------------------------------

    def submit_updates(
        self, session: Session, seq: int, updates: list[PilotUpdate], then_request: JobRequest | None = None
    ) -> None:
        """Queue a message's updates for the next round; `then_request` (sent with them) takes
        effect in that round, after they are written, and their acknowledgements go out with
        the jobs it brings."""
        for update in updates:
            self._updates.put_nowait((session, seq, update))
        if then_request is not None:
            session.requests_received += 1
            self._updates.put_nowait(
                (session, seq, _RequestAfterUpdates(then_request, session.requests_received, time.time()))
            )
        self.wake()

    async def _round_loop(self) -> None:
        while True:
            # With work waiting, the next round starts at once, before the event loop sends what
            # the last one assigned: those sends then overlap this round's transaction.
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.dispatch_poll_seconds)
            self._wake.clear()
            try:
                await self._round()
            except Exception as error:
                log_failure(log, "dispatch round failed (its updates are not acknowledged: the pilots resend them)",
                            error)
                await asyncio.sleep(1)

    async def _statuses(self) -> dict[str, str]:
        """Queue statuses, a pre-filter only (the claim checks the status itself). Read afresh
        every 2 s beside the rounds, so no round waits for it; waited for only when never read
        or just changed through this server."""
        if time.monotonic() - self._queue_status_time > 2.0 and self._status_reading is None:
            self._start_status_reading()
        while not self._queue_status_time:
            if self._status_reading is None:  # the last reading was overtaken by a change
                self._start_status_reading()
            assert self._status_reading is not None
            await asyncio.shield(self._status_reading)
        return self._queue_status

    def _start_status_reading(self) -> None:
        self._status_reading = asyncio.create_task(self._read_statuses(), name="queue statuses")
        self._status_reading.add_done_callback(_log_failure)

    async def _read_statuses(self) -> None:
        asked = time.monotonic()
        try:
            statuses = await self._db.run(self._queues.statuses)
            if asked >= self._queue_status_changed:  # not overtaken by a change meanwhile
                self._queue_status = statuses
                self._queue_status_time = asked
        finally:
            self._status_reading = None

    async def _round(self) -> None:
        """Every update that arrived since the last round and every claim the waiting pilots
        need, in one transaction; then each pilot gets its jobs with its acknowledgements."""
        batch: list[tuple[Session, int, PilotUpdate | _RequestAfterUpdates]] = []
        while len(batch) < _MAX_UPDATE_BATCH and not self._updates.empty():
            batch.append(self._updates.get_nowait())
        updates = [(session, seq, u) for session, seq, u in batch if isinstance(u, PilotUpdate)]
        for session, _, late in batch:
            if isinstance(late, _RequestAfterUpdates) and late.number == session.requests_received:
                self._take_request(session, late.request, late.received)
        # Those requests are served in this round: no need to wake the next one for them.
        self._wake.clear()
        if not self._updates.empty():
            self.wake()  # the rest in the next round
        groups = await self._claim_groups()
        if not updates and not groups:
            return
        if updates:
            UPDATE_BATCH.observe(len(updates))
        claims = [
            Claim(queue, offer, [(s.pilot_id, s.node, s.credits) for s in group],
                  {s.pilot_id: s.worker_id for s in group if s.worker_id})
            for (queue, offer), group in groups.items()
        ]
        result = await self._db.run(self._dispatch.exchange, [u for _, _, u in updates], claims)

        count_failures(result.failures.items())
        acks: dict[Session, list[UpdateAck]] = defaultdict(list)
        for (session, seq, _), outcome in zip(updates, result.outcomes, strict=True):
            if isinstance(outcome.error, PermissionDenied):
                log.warning("refused an update of pilot %s (%s, queue %s) for job %d: %s", session.pilot_id,
                            session.subject, session.queue, outcome.job_id, outcome.error.message)
            ack = acknowledgement(seq, outcome)
            if ack is not None:
                session.held.discard(ack.job_id)
                acks[session].append(ack)
        now = time.time()
        orphaned: list[int] = []
        for group in groups.values():
            for session in group:
                jobs = result.assigned.get(session.pilot_id)
                if not jobs:
                    continue
                if session.closed or self._sessions.get(session.pilot_id) is not session:
                    orphaned.extend(job.job_id for job in jobs)
                    continue
                session.held.update(job.job_id for job in jobs)
                session.credits = max(0, session.credits - len(jobs))
                for job in jobs:
                    activated = result.activated_at.get(job.job_id)
                    DISPATCH_LATENCY.observe(dispatch_latency(
                        activated.timestamp() if activated is not None else now, session.asked_at, now))
                session.send(Assignment(jobs, acks.pop(session, [])))
        # Pilots that got no job (none fits, or they asked for none) get their acks alone.
        for session, session_acks in acks.items():
            session.send_acks(session_acks)
        self.events_written.notify()
        if orphaned:
            await self._db.run(self._dispatch.release, orphaned, "pilot stream closed")
            self.events_written.notify()
        if result.reactivated or orphaned:
            self.wake()

    async def _claim_groups(self) -> dict[tuple[str, Offer], list[Session]]:
        """The pilots waiting for work, by queue and offer, on queues that hand out jobs."""
        waiting = [s for s in self._sessions.values() if s.credits > 0 and not s.closed]
        if not waiting:
            return {}
        statuses = await self._statuses()
        groups: dict[tuple[str, Offer], list[Session]] = defaultdict(list)
        for session in waiting:
            if statuses.get(session.queue) in DISPATCHING_STATUSES:
                groups[(session.queue, session.offer)].append(session)
        return groups

    # -- commands ------------------------------------------------------------------------

    async def deliver_commands(self, pilot_ids: list[str] | None = None) -> None:
        """Push pending commands to the pilots connected here; others get them from their replica."""
        connected = [p for p in (pilot_ids or list(self._sessions)) if p in self._sessions]
        if not connected:
            return
        pending = await self._db.run(self._commands.pending, connected)
        delivered = []
        for command in pending:
            session = self._sessions.get(command.pilot_id)
            if session is None or session.closed:
                continue
            session.send(command)
            delivered.append(command.command_id)
        await self._db.run(self._commands.mark_delivered, delivered)

    # -- when pilots were last heard ------------------------------------------------------

    async def write_pilots_heard(self) -> None:
        """Write when each pilot connected here was last heard, for those heard since the last
        write, in one statement."""
        heard = {s.pilot_id: s.heard for s in self._sessions.values() if s.heard > s.heard_written}
        heard = {**self._heard_unwritten, **heard}
        if not heard:
            return
        await self._db.run(
            self._pilots.seen, [(pilot_id, datetime.fromtimestamp(at, UTC)) for pilot_id, at in heard.items()]
        )
        for pilot_id, at in heard.items():
            self._heard_unwritten.pop(pilot_id, None)
            session = self._sessions.get(pilot_id)
            if session is not None:
                session.heard_written = max(session.heard_written, at)

    async def _heard_loop(self) -> None:
        # Often enough that a pilot still talking is never taken for silent by the heartbeat
        # rule (which also asks for a write before it looks), seldom enough to cost nothing.
        interval = max(0.5, min(5.0, self._settings.heartbeat_timeout_seconds / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.write_pilots_heard()
            except Exception as error:
                log_failure(log, "writing when pilots were last heard failed", error)

    async def _command_loop(self) -> None:
        # Commands written by another replica reach our pilots within a poll interval.
        for _ in itertools.count():
            await asyncio.sleep(max(self._settings.dispatch_poll_seconds, 0.5))
            try:
                await self.deliver_commands()
            except Exception as error:
                log_failure(log, "delivering commands failed", error)
