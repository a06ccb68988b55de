"""The refiner's steps: a registered task's input datasets checked, a defined task's inputs cut
into chunks, a task to retry made ready (domain.refining decides)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, func, select, update

from jedi_svc.domain import refining
from jedi_svc.domain.chunks import RUN_AGAIN_ON_RETRY
from jedi_svc.domain.progress import READY
from jedi_svc.domain.splitting import InputFile, SplitRule
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import Task, TaskChange
from jedi_svc.store.steps import TaskSteps
from jedi_svc.store.tables import contents, datasets, files
from panda_runtime.service import bulk
from panda_runtime.service.db import now

__all__ = ["RefineStore"]


class RefineStore(TaskSteps):
    def refine(self, task_id: int) -> str | None:
        """registered -> defined (or broken). Returns the new state."""
        return self._step(task_id, TaskState.REGISTERED, self._refine)

    def feed(self, task_id: int) -> str | None:
        """defined -> ready: the input files cut into chunks (or broken). Returns the new state."""
        return self._step(task_id, TaskState.DEFINED, self._feed)

    def reset_for_retry(self, task_id: int) -> str | None:
        """toretry -> ready: the chunks to run again get a new budget of attempts."""
        return self._step(task_id, TaskState.TORETRY, self._reset_for_retry)

    def _step(self, task_id: int, state: TaskState, step: Callable[[Connection, Task], TaskChange]) -> str | None:
        """One transaction: the task locked, if it is in `state`, and changed as `step` says."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or task.state != state:
                return None
            self._change(conn, task, step(conn, task), at)
            return task.state.value

    @staticmethod
    def _refine(conn: Connection, task: Task) -> TaskChange:
        names = task.input_datasets
        found = {r.name: r.dataset_id for r in conn.execute(
            select(datasets.c.name, datasets.c.dataset_id).where(datasets.c.name.in_(names)))}
        counts = {r.dataset_id: r.n for r in conn.execute(
            select(files.c.dataset_id, func.count().label("n")).where(files.c.dataset_id.in_(found.values()))
            .group_by(files.c.dataset_id))}
        return refining.refine(names, {name: counts.get(dataset_id, 0) for name, dataset_id in found.items()})

    @staticmethod
    def _feed(conn: Connection, task: Task) -> TaskChange:
        names = task.input_datasets
        rows = conn.execute(
            select(files.c.file_id, files.c.lfn, files.c.size_bytes, files.c.events, datasets.c.name)
            .select_from(files.join(datasets, files.c.dataset_id == datasets.c.dataset_id))
            .where(datasets.c.name.in_(names)).order_by(files.c.file_id)
        )
        inputs = [(r.name, InputFile(r.file_id, r.lfn, r.size_bytes, r.events)) for r in rows]
        feeding = refining.feed(names, inputs, SplitRule(task.split_kind, task.split_value))
        bulk.insert_rows(conn, contents, [
            {"task_id": task.task_id, "file_id": c.file_id, "first_event": c.first_event, "n_events": c.n_events,
             "split_group": c.group, "status": READY, "attempts": 0, "max_attempts": task.max_attempts,
             "job_row": 0, "error_code": 0, "error_diag": ""}
            for c in feeding.chunks
        ])
        return feeding.change

    @staticmethod
    def _reset_for_retry(conn: Connection, task: Task) -> TaskChange:
        again = conn.execute(
            update(contents)
            .where(contents.c.task_id == task.task_id, contents.c.status.in_(RUN_AGAIN_ON_RETRY))
            .values(status=READY, max_attempts=contents.c.attempts + task.max_attempts)
        ).rowcount
        return refining.retry(again)
