"""The refiner: registered -> defined (input datasets checked), defined -> ready (inputs cut
into chunks), toretry -> ready (failed inputs get new attempts)."""

from __future__ import annotations

import logging

from jedi_svc.domain.states import TaskState
from jedi_svc.store.refine_store import RefineStore
from panda_runtime.service.db import DbRunner

__all__ = ["Refiner"]

log = logging.getLogger("panda.jedi")


class Refiner:
    def __init__(self, db: DbRunner, store: RefineStore) -> None:
        self._db = db
        self._store = store

    async def step(self) -> bool:
        """One pass over the tasks to refine; True when some changed state."""
        tasks = await self._db.run(self._store.tasks_in, [TaskState.REGISTERED, TaskState.DEFINED, TaskState.TORETRY])
        changed = False
        for task in tasks:
            if task.state == TaskState.REGISTERED:
                new = await self._db.run(self._store.refine, task.task_id)
                if new == TaskState.DEFINED:
                    new = await self._db.run(self._store.feed, task.task_id)
            elif task.state == TaskState.DEFINED:
                new = await self._db.run(self._store.feed, task.task_id)
            else:
                new = await self._db.run(self._store.reset_for_retry, task.task_id)
            if new:
                log.info("task %d is %s", task.task_id, new)
                changed = True
        return changed
