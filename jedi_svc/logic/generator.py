"""The generator: brokerage over the server's queues and job generation, in batches stored
before they are submitted (logic.submitter)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from functools import partial

from jedi_svc.domain import brokerage, planning
from jedi_svc.domain.states import TaskState
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.logic.submitter import Submitter
from jedi_svc.settings import JediSettings
from jedi_svc.store.generation_store import GenerationStore
from panda_runtime.service.db import DbRunner, now

__all__ = ["Generator"]

log = logging.getLogger("panda.jedi")

# SubmitJobs calls one task may have in flight: the server stores one batch while the next is sent.
SUBMITS_IN_FLIGHT = 3
# Jobs in the first batch of a round of generation.
FIRST_BATCH = 1000
_CANDIDATES = [TaskState.READY, TaskState.SCOUTED, TaskState.RUNNING, TaskState.PENDING, TaskState.THROTTLED]


class Generator:
    def __init__(self, settings: JediSettings, db: DbRunner, store: GenerationStore, server: ServerCalls,
                 submitter: Submitter, guard: TaskGuard) -> None:
        self._settings = settings
        self._db = db
        self._store = store
        self._server = server
        self._submitter = submitter
        self._guard = guard

    async def step(self) -> bool:
        """Stored batches sent, then every task that may have jobs to make planned; True when
        some task was. A task whose jobs cannot be made or sent is broken; the others go on."""
        await self._submitter.resolve()
        candidates = await self._db.run(self._store.tasks_in, _CANDIDATES)
        queues: list[brokerage.QueueInfo] | None = None
        generated = False
        for task in candidates:
            if not planning.may_plan(task.state, task.wait_until, now()):
                continue
            if planning.needs_ready_chunks(task.state) and not await self._db.run(
                    self._store.has_ready_chunks, task.task_id):
                continue
            if queues is None:
                queues = await self._server.list_queues()
            counted = await self._guard.run(task.task_id, "generating jobs",
                                            partial(self._generate_for, task.task_id, queues))
            if counted is not None:
                queues = counted
                generated = True
        return generated

    async def _generate_for(self, task_id: int, queues: list[brokerage.QueueInfo]) -> list[brokerage.QueueInfo]:
        """Plan and submit the task's jobs a batch at a time: the next batches are planned while
        earlier ones are being submitted (at most SUBMITS_IN_FLIGHT at once). Returns the queues
        with what was assigned counted."""
        settings = self._settings
        sending: list[asyncio.Task[None]] = []
        # A small first batch gets the server storing jobs while the next, full one is planned.
        size = min(FIRST_BATCH, settings.jedi_submit_batch)
        try:
            while True:
                # Fresh copies: brokerage counts its own assignments as queued.
                snapshot = [replace(q) for q in queues]
                result = await self._db.run(
                    self._store.plan_jobs, task_id, snapshot, batch_size=settings.jedi_submit_batch,
                    pending_retry=settings.jedi_pending_retry_seconds,
                    jobs_per_point=settings.jedi_fair_share_jobs_per_point, max_jobs=size,
                    max_queued=settings.jedi_max_queued_jobs_per_task,
                )
                if result.pending_reason:
                    log.info("task %d pending: %s", task_id, result.pending_reason)
                while len(sending) >= (SUBMITS_IN_FLIGHT if result.batches else 1):
                    await sending.pop(0)
                if not result.batches:
                    return queues
                queues = snapshot
                size = settings.jedi_submit_batch
                sending += [asyncio.create_task(self._submitter.submit(task_id, b, result.specs.get(b)))
                            for b in result.batches]
        finally:
            for task in sending:
                await task
