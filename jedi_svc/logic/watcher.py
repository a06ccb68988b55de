"""The watcher: the server's WatchJobs stream from JEDI's stored cursor, applied in batches:
job states, outcomes of ended jobs (chunks done, retried or failed), outputs, scouts'
measurements. Cursors the stream skipped are looked for again (domain.cursors)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

import grpc
from prometheus_client import Counter

from jedi_svc.domain.cursors import CursorGaps
from jedi_svc.domain.jobs import JobDetails, JobEvent
from jedi_svc.logic.confinement import TaskGuard, is_outage
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.logic.submitter import Submitter
from jedi_svc.store.watch_store import WatchStore
from panda_runtime.service.db import DbRunner, log_failure

__all__ = ["Watcher"]

log = logging.getLogger("panda.jedi")

JOB_EVENTS = Counter("panda_jedi_job_events_total", "Server job events JEDI applied.")

# Events applied per transaction at most.
EVENT_BATCH = 5000
# How often missing cursors are looked for while the stream is busy.
GAP_RETRY_SECONDS = 0.5


class Watcher:
    def __init__(self, db: DbRunner, store: WatchStore, server: ServerCalls, submitter: Submitter,
                 on_touched: Callable[[set[int]], None], guard: TaskGuard) -> None:
        self._db = db
        self._store = store
        self._server = server
        self._submitter = submitter
        self._guard = guard
        # Told the tasks whose jobs changed.
        self._on_touched = on_touched
        self._gaps = CursorGaps()
        # The cursor stored with the last events applied.
        self._applied = 0
        self._last_fill = 0.0
        self._from_now = False
        self.stopping = False

    async def run(self) -> None:
        """Until stopped: stored batches resolved first (their jobs' events need their ids),
        then one stream after another, each resuming from the stored cursor."""
        await self._until_done(self._submitter.resolve, "resubmitting stored batches")
        self._applied = await self._db.run(self._store.watch_cursor)
        self._gaps = CursorGaps(self._applied)
        # A JEDI that never submitted a job needs none of the server's past events.
        self._from_now = not self._applied and not await self._db.run(self._store.has_jobs)
        failures = 0
        while not self.stopping:
            try:
                await self._watch_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except grpc.RpcError as error:
                # The stream is read on a thread: its errors are grpc's synchronous ones. A
                # refusal now (no token yet, the revocation list not fetched yet) is retried.
                failures += 1
                if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    log.warning("watch: %s %s; resuming after cursor %d", error.code().name, error.details(),
                                self._applied)
                    await asyncio.sleep(min(10.0, 0.5 * failures))
            except Exception as error:
                failures += 1
                log_failure(log, f"watch failed; resuming after cursor {self._applied}", error)
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
        stream = self._server.open_watch(self._applied, from_now=self._from_now and not self._applied)
        try:
            while True:
                batch = await stream.batch(1.0, EVENT_BATCH)
                if batch:
                    self._gaps.seen((e.cursor for e in batch), time.monotonic())
                    await self._apply(batch)
                elif not stream.ended:
                    await self._fill_gaps()  # a quiet second
                if self._gaps.missing and time.monotonic() - self._last_fill >= GAP_RETRY_SECONDS:
                    await self._fill_gaps()
                if stream.finished:
                    await stream.batch(0, EVENT_BATCH)  # raises the stream's error, if any
                    return
        finally:
            await asyncio.to_thread(stream.close)

    async def _apply(self, events: list[JobEvent]) -> None:
        unmapped = await self._db.run(self._store.unmapped, events)
        if unmapped:
            await self._submitter.resolve(unmapped)
        wanted = await self._db.run(self._store.finished_jobs_needing_details, events)
        details: dict[int, JobDetails] = {}
        for task_id, job_ids in wanted.items():
            found = await self._guard.run(task_id, "reading its finished jobs",
                                          partial(self._server.job_details, task_id, job_ids))
            details.update(found or {})
        cursor = self._gaps.safe_cursor()
        try:
            touched = await self._db.run(self._store.apply_job_events, events, details, cursor)
        except Exception as error:
            if is_outage(error):
                raise
            touched = await self._apply_task_by_task(events, details, cursor)
        self._applied = cursor
        JOB_EVENTS.inc(len(events))
        if touched:
            self._on_touched(touched)

    async def _apply_task_by_task(self, events: list[JobEvent], details: dict[int, JobDetails],
                                  cursor: int) -> set[int]:
        """The events of each task applied on their own, when applying them together failed: the
        task whose events cannot be applied is broken, the others' are applied, and the stream
        goes on past them all."""
        by_task: dict[int, list[JobEvent]] = {}
        for event in events:
            by_task.setdefault(event.task_id, []).append(event)
        touched: set[int] = set()
        for task_id, group in by_task.items():
            done = await self._guard.run(task_id, "applying its jobs' events",
                                         partial(self._db.run, self._store.apply_job_events, group, details, None))
            touched |= done or set()
        await self._db.run(self._store.store_cursor, cursor)
        return touched

    async def _fill_gaps(self) -> None:
        """Look again for cursors the stream skipped; forget those missing too long."""
        self._last_fill = at = time.monotonic()
        if not self._gaps.missing:
            return
        self._gaps.give_up(at)
        if not self._gaps.missing:
            await self._db.run(self._store.store_cursor, self._gaps.safe_cursor())
            self._applied = self._gaps.safe_cursor()
            return
        missing = self._gaps.missing
        low, high = min(missing), max(missing)
        found: list[JobEvent] = []
        with contextlib.suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(3.0):
                async for event in self._server.watch(low - 1):
                    if event.cursor in missing:
                        found.append(event)
                    if event.cursor >= high:
                        break
        self._gaps.seen((e.cursor for e in found), at)
        if found:
            log.info("watch: %d late event(s) found", len(found))
            await self._apply(found)
