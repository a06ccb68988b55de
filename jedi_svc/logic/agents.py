"""JEDI's agents, each a loop over what the tables say is to be done, so any of them (or the
whole process) can stop at any point and pick up where it was:

- refiner: registered -> defined (input datasets checked), defined -> ready (contents fed:
  inputs split into chunks), toretry -> ready (failed inputs get new attempts);
- generator: brokerage over the server's queues and job generation, in batches stored before
  they are submitted with a request id of their own (a crash in between cannot duplicate jobs);
- watcher: the server's WatchJobs stream from JEDI's stored cursor: job states, outcomes of
  ended jobs (chunks done, retried or failed), outputs, scouts' measurements;
- post-processor: ends scouting, detects exhaustion, decides the end state;
- commander: what commands need from the server (kill, finish, reassign jobs, new priority).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter

from jedi_svc.domain import brokerage
from jedi_svc.domain.states import TaskState
from jedi_svc.logic.server_client import ServerClient
from jedi_svc.settings import JediSettings
from jedi_svc.store.engine_store import EngineStore, JobEvent
from panda_runtime.service.db import DbRunner, aware, now
from panda_runtime.service.notify import Notifier

log = logging.getLogger("panda.jedi")

JOBS_GENERATED = Counter("panda_jedi_jobs_generated_total", "Jobs JEDI generated and submitted to the server.")
JOB_EVENTS = Counter("panda_jedi_job_events_total", "Server job events JEDI applied.")

# SubmitJobs calls one task may have in flight: the server stores one batch while the next is sent.
SUBMITS_IN_FLIGHT = 3
# Jobs in the first batch of a round of generation.
FIRST_BATCH = 1000
# Events applied per transaction at most.
EVENT_BATCH = 5000
# A cursor missing from the server's stream (a transaction that committed late) is looked for
# again for this long, then taken as rolled back.
GAP_GIVE_UP_SECONDS = 30.0
# How often missing cursors are looked for while the stream is busy.
GAP_RETRY_SECONDS = 0.5
# Every this many rounds the post-processor looks at every live task, not only those touched.
FULL_SWEEP_ROUNDS = 10

_LIVE = [TaskState.READY, TaskState.SCOUTING, TaskState.SCOUTED, TaskState.RUNNING, TaskState.PENDING,
         TaskState.FINISHING, TaskState.ABORTING, TaskState.EXHAUSTED, TaskState.THROTTLED]


class Agents:
    def __init__(self, settings: JediSettings, db: DbRunner, store: EngineStore, server: ServerClient,
                 task_events: Notifier) -> None:
        self.settings = settings
        self.db = db
        self.store = store
        self.server = server
        self.task_events = task_events
        self._wakers: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        # One lock per batch being submitted: whoever sends a batch (the generator, or anyone
        # resolving stored batches) holds it until the server's job ids are recorded.
        self._batch_locks: dict[tuple[int, int], asyncio.Lock] = {}
        self._dirty: set[int] = set()
        self._missing: dict[int, float] = {}
        self._applied = 0
        self._last_seen = 0
        self._last_fill = 0.0
        self._from_now = False
        self._rounds = 0
        self.stopping = False

    # -- running the agents ------------------------------------------------------------

    def wake(self) -> None:
        for event in self._wakers.values():
            event.set()

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop("refiner", self.refine_step)),
            asyncio.create_task(self._loop("generator", self.generate_step)),
            asyncio.create_task(self._loop("post-processor", self.postprocess_step)),
            asyncio.create_task(self._loop("commander", self.command_step)),
            asyncio.create_task(self._watch_loop()),
        ]

    async def stop(self) -> None:
        self.stopping = True
        self.wake()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _loop(self, name: str, step: Callable[[], Awaitable[bool]]) -> None:
        """Run `step` until it has nothing to do, then wait for a wake-up or the interval."""
        waker = self._wakers.setdefault(name, asyncio.Event())
        failures = 0
        while not self.stopping:
            waker.clear()
            try:
                busy = await step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                busy = False
                if isinstance(error, grpc.aio.AioRpcError):
                    log.warning("%s: server call failed: %s %s", name, error.code().name, error.details())
                else:
                    log.exception("%s failed", name)
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
            self.task_events.notify()
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.wait(), self.settings.jedi_interval_seconds)

    # -- refiner -------------------------------------------------------------------------

    async def refine_step(self) -> bool:
        tasks = await self.db.run(self.store.tasks_in, [TaskState.REGISTERED, TaskState.DEFINED, TaskState.TORETRY])
        changed = False
        for task in tasks:
            state = TaskState(task["state"])
            if state == TaskState.REGISTERED:
                new = await self.db.run(self.store.refine, task["task_id"])
                if new == TaskState.DEFINED.value:
                    new = await self.db.run(self.store.feed, task["task_id"])
            elif state == TaskState.DEFINED:
                new = await self.db.run(self.store.feed, task["task_id"])
            else:
                new = await self.db.run(self.store.reset_for_retry, task["task_id"])
            if new:
                log.info("task %d is %s", task["task_id"], new)
                changed = True
        if changed:
            self.wake()
        return False

    # -- generator (brokerage and job generation) ----------------------------------------

    async def generate_step(self) -> bool:
        await self.resolve_submitting()
        candidates = await self.db.run(
            self.store.tasks_in,
            [TaskState.READY, TaskState.SCOUTED, TaskState.RUNNING, TaskState.PENDING, TaskState.THROTTLED])
        queues: list[brokerage.QueueInfo] | None = None
        generated = False
        for task in candidates:
            task_id = task["task_id"]
            wait_until = aware(task["wait_until"])
            if task["state"] == TaskState.PENDING.value and wait_until is not None and wait_until > now():
                continue
            if not await self.db.run(self.store.has_ready_chunks, task_id) and task["state"] not in (
                    TaskState.PENDING.value, TaskState.THROTTLED.value):
                continue
            if queues is None:
                queues = await self.server.list_queues()
            queues = await self._generate_for(task_id, queues)
            generated = True
        if generated:
            self.wake()
        return False

    async def _generate_for(self, task_id: int, queues: list[brokerage.QueueInfo]) -> list[brokerage.QueueInfo]:
        """Plan and submit the task's jobs a batch at a time: the next batches are planned while
        earlier ones are being submitted (at most SUBMITS_IN_FLIGHT at once). Returns the queues
        with what was assigned counted."""
        sending: list[asyncio.Task[None]] = []
        # A small first batch gets the server storing jobs while the next, full one is planned.
        size = min(FIRST_BATCH, self.settings.jedi_submit_batch)
        try:
            while True:
                # Fresh copies: brokerage counts its own assignments as queued.
                snapshot = [brokerage.QueueInfo(**vars(q)) for q in queues]
                result = await self.db.run(
                    self.store.plan_jobs, task_id, snapshot, batch_size=self.settings.jedi_submit_batch,
                    pending_retry=self.settings.jedi_pending_retry_seconds,
                    jobs_per_point=self.settings.jedi_fair_share_jobs_per_point,
                    max_jobs=size,
                    max_queued=self.settings.jedi_max_queued_jobs_per_task,
                )
                if result.pending_reason:
                    log.info("task %d pending: %s", task_id, result.pending_reason)
                while len(sending) >= (SUBMITS_IN_FLIGHT if result.batches else 1):
                    await sending.pop(0)
                if not result.batches:
                    return queues
                queues = snapshot
                size = self.settings.jedi_submit_batch
                sending += [asyncio.create_task(self._submit_batch(task_id, b, result.specs.get(b)))
                            for b in result.batches]
        finally:
            for task in sending:
                await task

    async def _submit_batch(self, task_id: int, batch: int,
                            planned: tuple[str, list[dict[str, Any]]] | None = None) -> None:
        """Send a stored batch; `planned` is its request id and specs as just stored (else read)."""
        lock = self._batch_locks.setdefault((task_id, batch), asyncio.Lock())
        try:
            async with lock:
                await self._send_batch(task_id, batch, planned)
        finally:
            if not lock.locked():
                self._batch_locks.pop((task_id, batch), None)

    async def _send_batch(self, task_id: int, batch: int, planned: tuple[str, list[dict[str, Any]]] | None) -> None:
        if planned is not None:
            request_id, specs = planned
        else:
            request_id, rows = await self.db.run(self.store.batch, task_id, batch)
            if not any(r["state"] == "submitting" for r in rows):
                return
            specs = [r["spec"] for r in rows]
        owner, vo = await self.db.run(self.store.owner_of, task_id)
        started = time.monotonic()
        job_ids = await self.server.submit_jobs(specs, request_id, owner=owner, vo=vo)
        called = time.monotonic()
        await self.db.run(self.store.record_submitted, task_id, batch, job_ids)
        JOBS_GENERATED.inc(len(job_ids))
        log.info("task %d: submitted batch %d, %d job(s) (%d..%d) in %.2f s (SubmitJobs %.2f s)", task_id, batch,
                 len(job_ids), job_ids[0], job_ids[-1], time.monotonic() - started, called - started)

    async def resolve_submitting(self, task_ids: list[int] | None = None) -> None:
        """Send again every batch stored but not known to be at the server (same request id:
        the server answers with the jobs it made, or makes them now)."""
        for task_id, batch in await self.db.run(self.store.submitting_batches, task_ids or ()):
            await self._submit_batch(task_id, batch)

    # -- watcher -------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        await self._until_done(self.resolve_submitting, "resubmitting stored batches")
        self._applied = self._last_seen = await self.db.run(self.store.watch_cursor)
        # A JEDI that never submitted a job needs none of the server's past events.
        self._from_now = not self._applied and not await self.db.run(self.store.has_jobs)
        failures = 0
        while not self.stopping:
            try:
                await self._watch_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                failures += 1
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    log.warning("watch: %s %s; resuming after cursor %d", error.code().name, error.details(),
                                self._applied)
                    await asyncio.sleep(min(10.0, 0.5 * failures))
            except Exception:
                failures += 1
                log.exception("watch failed; resuming after cursor %d", self._applied)
                await asyncio.sleep(min(10.0, 0.5 * failures))

    async def _until_done(self, step: Callable[[], Awaitable[None]], what: str) -> None:
        failures = 0
        while not self.stopping:
            try:
                await step()
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                failures += 1
                log.warning("%s failed (%s); trying again", what, error)
                await asyncio.sleep(min(10.0, 0.5 * failures))

    async def _watch_once(self) -> None:
        """One WatchJobs stream (until its deadline or an error): events applied in batches."""
        stream = self.server.open_watch(self._applied, from_now=self._from_now and not self._applied)
        try:
            while True:
                batch = await stream.batch(1.0, EVENT_BATCH)
                if batch:
                    self._note_gaps(batch)
                    await self._apply(batch)
                elif not stream.ended:
                    await self._fill_gaps()  # a quiet second
                if self._missing and time.monotonic() - self._last_fill >= GAP_RETRY_SECONDS:
                    await self._fill_gaps()
                if stream.finished:
                    await stream.batch(0, EVENT_BATCH)  # raises the stream's error, if any
                    return
        finally:
            await asyncio.to_thread(stream.close)

    def _note_gaps(self, batch: list[JobEvent]) -> None:
        previous = self._last_seen
        at = time.monotonic()
        for event in batch:
            self._missing.pop(event.cursor, None)
            if previous and event.cursor > previous + 1 and event.cursor - previous < 10_000:
                for cursor in range(previous + 1, event.cursor):
                    self._missing.setdefault(cursor, at)
            previous = max(previous, event.cursor)
        self._last_seen = previous

    def _safe_cursor(self) -> int:
        """Where to resume after a restart: before the oldest event still missing."""
        return min(self._missing) - 1 if self._missing else self._last_seen

    async def _apply(self, events: list[JobEvent]) -> None:
        unmapped = await self.db.run(self.store.unmapped, events)
        if unmapped:
            await self.resolve_submitting(unmapped)
        wanted = await self.db.run(self.store.finished_jobs_needing_details, events)
        details = {}
        for task_id, job_ids in wanted.items():
            details.update(await self.server.job_details(task_id, job_ids))
        cursor = self._safe_cursor()
        touched = await self.db.run(self.store.apply_job_events, events, details, cursor)
        self._applied = cursor
        JOB_EVENTS.inc(len(events))
        if touched:
            self._dirty.update(touched)
            self._wakers.get("post-processor", asyncio.Event()).set()

    async def _fill_gaps(self) -> None:
        """Look again for cursors the stream skipped: a transaction at the server that took a
        cursor before another but committed after it shows up only later."""
        self._last_fill = at = time.monotonic()
        if not self._missing:
            return
        for cursor in [c for c, seen in self._missing.items() if at - seen > GAP_GIVE_UP_SECONDS]:
            del self._missing[cursor]
        if not self._missing:
            await self.db.run(self.store.store_cursor, self._safe_cursor())
            self._applied = self._safe_cursor()
            return
        low, high = min(self._missing), max(self._missing)
        found: list[JobEvent] = []
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(3.0):
                async for event in self.server.watch(low - 1):
                    if event.cursor in self._missing:
                        found.append(event)
                    if event.cursor >= high:
                        break
        for event in found:
            self._missing.pop(event.cursor, None)
        if found:
            log.info("watch: %d late event(s) found", len(found))
            await self._apply(found)

    # -- post-processor ------------------------------------------------------------------

    async def postprocess_step(self) -> bool:
        self._rounds += 1
        if self._rounds % FULL_SWEEP_ROUNDS == 1:
            ids = [t["task_id"] for t in await self.db.run(self.store.tasks_in, _LIVE)]
        else:
            ids = sorted(self._dirty)
        self._dirty.clear()
        changed = False
        for task_id in ids:
            new = await self.db.run(self.store.postprocess, task_id)
            if new:
                log.info("task %d is %s", task_id, new)
                changed = True
        if changed:
            self.wake()
        return False

    def touch(self, task_id: int) -> None:
        self._dirty.add(task_id)
        self.wake()

    # -- commander -----------------------------------------------------------------------

    async def command_step(self) -> bool:
        pending = await self.db.run(self.store.pending_commands)
        for command in pending:
            note = await self._execute(command)
            await self.db.run(self.store.command_done, command["command_id"], note)
            self.touch(command["task_id"])
        return False

    async def _execute(self, command: dict[str, Any]) -> str:
        task_id, kind, args = command["task_id"], command["kind"], command["args"]
        await self.resolve_submitting([task_id])
        if kind == "kill":
            jobs = await self.db.run(self.store.jobs_in_flight, task_id)
            if not jobs:
                return ""
            await self.server.kill_jobs([j["job_id"] for j in jobs], args.get("reason", "task killed"))
            return f"kill sent for {len(jobs)} job(s)"
        if kind == "finish":
            jobs = await self.db.run(self.store.jobs_in_flight, task_id, states=["activated"])
            if not jobs:
                return ""
            await self.server.kill_jobs([j["job_id"] for j in jobs], args.get("reason", "task finished"))
            return f"cancelled {len(jobs)} job(s) not yet started"
        if kind == "reassign":
            return await self._reassign(task_id, list(args.get("queues", [])))
        if kind == "priority":
            changed = await self.server.set_task_jobs_priority(task_id, int(args["priority"]))
            return f"priority {args['priority']} set on {changed} queued job(s)" if changed else ""
        log.warning("task %d: unknown command %r ignored", task_id, kind)
        return ""

    async def _reassign(self, task_id: int, names: list[str]) -> str:
        jobs = await self.db.run(self.store.jobs_in_flight, task_id, states=["activated"])
        movable = [j for j in jobs if j["queue"] not in names]
        if not movable:
            return ""
        queues = [q for q in await self.server.list_queues() if q.queue_id in names]
        spec = movable[0]["spec"]["resources"]
        request = brokerage.JobRequest(spec["cores"], spec["memory_mb"], spec["walltime_seconds"], spec["disk_mb"])
        found = brokerage.candidates(queues, request, allowed=names, excluded=[])
        if not found.queues:
            return f"reassign: none of the {len(movable)} queued job(s) moved: {found.reason()}"
        inputs = [[(f.get("size_bytes", 0), [f.get("storage_element", "")]) for f in j["spec"]["files"]
                   if f["kind"] == "input"] for j in movable]
        chosen = brokerage.assign(found.queues, inputs)
        by_queue: dict[str, list[int]] = {}
        for job, queue in zip(movable, chosen, strict=True):
            by_queue.setdefault(queue.queue_id, []).append(job["job_id"])
        moved: list[tuple[int, str]] = []
        for queue_id, job_ids in by_queue.items():
            moved += [(j, queue_id) for j in await self.server.reassign_jobs(job_ids, queue_id)]
        await self.db.run(self.store.set_job_queues, moved)
        return f"reassigned {len(moved)} queued job(s): " + ", ".join(
            f"{q} x{sum(1 for _, m in moved if m == q)}" for q in sorted(by_queue))
