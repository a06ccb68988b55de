"""Batches of jobs to the server: each stored before it is sent (GenerationStore), sent with
its request id, its server job ids recorded. A batch stored but not known to be at the server
(JEDI stopped, or the answer was lost) is sent again with the same request id, and the server
answers with the jobs it made."""

from __future__ import annotations

import asyncio
import logging
import time
from functools import partial

from prometheus_client import Counter

from jedi_svc.domain.jobs import SUBMITTING, JobSpec
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.store.generation_store import GenerationStore
from panda_runtime.service.db import DbRunner

__all__ = ["Submitter"]

log = logging.getLogger("panda.jedi")

JOBS_GENERATED = Counter("panda_jedi_jobs_generated_total", "Jobs JEDI generated and submitted to the server.")


class Submitter:
    def __init__(self, db: DbRunner, store: GenerationStore, server: ServerCalls, guard: TaskGuard) -> None:
        self._db = db
        self._store = store
        self._server = server
        self._guard = guard
        # One lock per batch being submitted: whoever sends a batch (the generator, or anyone
        # resolving stored batches) holds it until the server's job ids are recorded.
        self._batch_locks: dict[tuple[int, int], asyncio.Lock] = {}

    async def submit(self, task_id: int, batch: int, planned: tuple[str, list[JobSpec]] | None = None) -> None:
        """Send a stored batch; `planned` is its request id and specs as just stored (else read).
        A batch the server refuses (INVALID_ARGUMENT, ...) breaks its task, not the caller."""
        lock = self._batch_locks.setdefault((task_id, batch), asyncio.Lock())
        try:
            async with lock:
                await self._guard.run(task_id, f"submitting batch {batch}",
                                      partial(self._send, task_id, batch, planned))
        finally:
            if not lock.locked():
                self._batch_locks.pop((task_id, batch), None)

    async def _send(self, task_id: int, batch: int, planned: tuple[str, list[JobSpec]] | None) -> None:
        if planned is not None:
            request_id, specs = planned
        else:
            request_id, stored = await self._db.run(self._store.batch, task_id, batch)
            if not any(job.state == SUBMITTING for job in stored):
                return
            specs = [job.spec for job in stored]
        owner, vo = await self._db.run(self._store.owner_of, task_id)
        started = time.monotonic()
        job_ids = await self._server.submit_jobs(specs, request_id, owner=owner, vo=vo)
        called = time.monotonic()
        await self._db.run(self._store.record_submitted, task_id, batch, job_ids)
        JOBS_GENERATED.inc(len(job_ids))
        log.info("task %d: submitted batch %d, %d job(s) (%d..%d) in %.2f s (SubmitJobs %.2f s)", task_id, batch,
                 len(job_ids), job_ids[0], job_ids[-1], time.monotonic() - started, called - started)

    async def resolve(self, task_ids: list[int] | None = None) -> None:
        """Send again every batch stored but not known to be at the server (of these tasks, or
        of all)."""
        for task_id, batch in await self._db.run(self._store.submitting_batches, task_ids or ()):
            await self.submit(task_id, batch)
