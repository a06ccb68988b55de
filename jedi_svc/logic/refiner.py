"""The refiner: registered -> defined (input datasets checked), defined -> ready (inputs cut
into chunks), toretry -> ready (failed inputs get new attempts)."""

from __future__ import annotations

import logging
from functools import partial

from jedi_svc.domain.states import TaskState
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.store.records import TaskHead
from jedi_svc.store.refine_store import RefineStore
from panda_runtime.service.db import DbRunner

__all__ = ["Refiner"]

log = logging.getLogger("panda.jedi")


class Refiner:
    def __init__(self, db: DbRunner, store: RefineStore, guard: TaskGuard) -> None:
        self._db = db
        self._store = store
        self._guard = guard

    async def step(self) -> bool:
        """One pass over the tasks to refine; True when some changed state. A task that cannot
        be refined is broken; the pass goes on with the others."""
        tasks = await self._db.run(self._store.tasks_in, [TaskState.REGISTERED, TaskState.DEFINED, TaskState.TORETRY])
        changed = False
        for task in tasks:
            new = await self._guard.run(task.task_id, "refining", partial(self._refine, task))
            if new:
                log.info("task %d is %s", task.task_id, new)
            changed = changed or new is not None
        return changed

    async def _refine(self, task: TaskHead) -> str | None:
        if task.state == TaskState.REGISTERED:
            new = await self._db.run(self._store.refine, task.task_id)
            if new == TaskState.DEFINED:
                new = await self._db.run(self._store.feed, task.task_id)
            return new
        if task.state == TaskState.DEFINED:
            return await self._db.run(self._store.feed, task.task_id)
        return await self._db.run(self._store.reset_for_retry, task.task_id)
