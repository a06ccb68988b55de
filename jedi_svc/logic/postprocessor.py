"""The post-processor: ends scouting, detects exhaustion, decides the end state
(domain.postprocessing), for the tasks whose jobs or commands changed, and every
FULL_SWEEP_ROUNDS rounds for every live task."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

from jedi_svc.domain.states import TaskState
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.store.postprocess_store import PostprocessStore
from panda_runtime.service.db import DbRunner

__all__ = ["PostProcessor"]

log = logging.getLogger("panda.jedi")

# Every this many rounds the post-processor looks at every live task, not only those touched.
FULL_SWEEP_ROUNDS = 10
_LIVE = [TaskState.READY, TaskState.SCOUTING, TaskState.SCOUTED, TaskState.RUNNING, TaskState.PENDING,
         TaskState.FINISHING, TaskState.ABORTING, TaskState.EXHAUSTED, TaskState.THROTTLED]


class PostProcessor:
    def __init__(self, db: DbRunner, store: PostprocessStore, guard: TaskGuard) -> None:
        self._db = db
        self._store = store
        self._guard = guard
        self._dirty: set[int] = set()
        self._rounds = 0

    def touch(self, task_ids: Iterable[int]) -> None:
        """These tasks are looked at in the next round."""
        self._dirty.update(task_ids)

    async def step(self) -> bool:
        """One round; True when some task changed state."""
        self._rounds += 1
        if self._rounds % FULL_SWEEP_ROUNDS == 1:
            ids = [t.task_id for t in await self._db.run(self._store.tasks_in, _LIVE)]
        else:
            ids = sorted(self._dirty)
        self._dirty.clear()
        changed = False
        for task_id in ids:
            new = await self._guard.run(task_id, "post-processing", partial(self._db.run, self._store.postprocess,
                                                                            task_id))
            if new:
                log.info("task %d is %s", task_id, new)
                changed = True
        return changed
