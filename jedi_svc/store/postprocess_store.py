"""The post-processor's step: what a task's chunks and jobs say it becomes (scouting ended,
exhausted, ended), as domain.postprocessing decides."""

from __future__ import annotations

from sqlalchemy import func, select, update

from jedi_svc.domain import postprocessing
from jedi_svc.domain.jobs import JOB_FINAL_STATES, TaskJob
from jedi_svc.domain.progress import CANCELLED
from jedi_svc.domain.states import TaskState
from jedi_svc.store.records import JOB_COLUMNS, job_of
from jedi_svc.store.steps import TaskSteps
from jedi_svc.store.tables import contents, jobs
from panda_runtime.service.db import now

__all__ = ["PostprocessStore"]


class PostprocessStore(TaskSteps):
    def postprocess(self, task_id: int) -> str | None:
        """End scouting, end the task, or stop it for too many failures. Returns the new state."""
        at = now()
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or not postprocessing.looks_at(task.state):
                return None
            counts = {r.status: r.n for r in conn.execute(
                select(contents.c.status, func.count().label("n")).where(contents.c.task_id == task_id)
                .group_by(contents.c.status))}
            in_flight = conn.execute(select(func.count()).select_from(jobs).where(
                jobs.c.task_id == task_id, jobs.c.state.not_in(list(JOB_FINAL_STATES)))).scalar_one()
            scouts: list[TaskJob] = []
            if task.state == TaskState.SCOUTING:
                scouts = [job_of(r) for r in conn.execute(
                    select(*JOB_COLUMNS).where(jobs.c.task_id == task_id, jobs.c.scout.is_(True))
                    .order_by(jobs.c.row_id))]
            decision = postprocessing.postprocess(task, counts, in_flight, scouts)
            if decision.change is None:
                return None
            if decision.cancel:
                conn.execute(update(contents).where(contents.c.task_id == task_id,
                                                    contents.c.status.in_(decision.cancel))
                             .values(status=CANCELLED))
            before = task.state
            self._change(conn, task, decision.change, at)
            return task.state.value if task.state != before else None
