"""What the agents' stores share. Each step of an agent is one transaction that takes the
task's row lock first (PostgreSQL; SQLite has one writer), so agents running side by side
never see a task half-changed, and everything an agent needs to resume after a crash is in
the tables: a step either happened entirely or not at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, select, update

from jedi_svc.domain import breaking
from jedi_svc.domain.jobs import SUBMITTING
from jedi_svc.domain.progress import CANCELLED, READY
from jedi_svc.domain.states import FINAL_STATES, TaskState, check_transition
from jedi_svc.domain.tasks import Task, TaskChange
from jedi_svc.store.common import record_event
from jedi_svc.store.records import TaskHead, task_of
from jedi_svc.store.tables import contents, jobs, tasks
from panda_runtime.service.db import Store, aware, now

__all__ = ["TaskSteps", "in_parts"]

_T = TypeVar("_T")
# Values per IN (...) list at most.
_IN_PART = 1000


def in_parts(items: Sequence[_T], size: int = _IN_PART) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TaskSteps(Store):
    def tasks_in(self, task_states: Iterable[TaskState]) -> list[TaskHead]:
        """Tasks in these states, by priority (highest first), then age."""
        names = [s.value for s in task_states]
        query = select(tasks.c.task_id, tasks.c.state, tasks.c.wait_until).where(
            tasks.c.state.in_(names)).order_by(tasks.c.priority.desc(), tasks.c.task_id)
        with self._engine.connect() as conn:
            return [TaskHead(r.task_id, TaskState(r.state), aware(r.wait_until)) for r in conn.execute(query)]

    def break_task(self, task_id: int, what: str, cause: str) -> bool:
        """The task BROKEN (domain.breaking), its batches never sent cancelled with the inputs
        they held, and its inputs no job has taken. Reads no more of the task than its state, so
        a task whose stored row cannot be read whole is broken too. False when it had already
        ended, or is gone."""
        at = now()
        with self._engine.begin() as conn:
            state = conn.execute(self._locked(select(tasks.c.state).where(tasks.c.task_id == task_id))).scalar()
            if state is None:
                return False
            known = state in {s.value for s in TaskState}
            change = breaking.broken(TaskState(state) if known else TaskState.REGISTERED, what, cause)
            if change is None:
                return False
            reason = change.reason or ""
            unsent = list(conn.execute(select(jobs.c.row_id).where(
                jobs.c.task_id == task_id, jobs.c.state == SUBMITTING)).scalars())
            for part in in_parts(unsent):
                # "cancelled", a final state: no one sends these batches again.
                conn.execute(update(jobs).where(jobs.c.row_id.in_(part)).values(
                    state="cancelled", error_diag=reason, end_time=at))
                conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.job_row.in_(part))
                             .values(status=CANCELLED))
            conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.status == READY)
                         .values(status=CANCELLED))
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(
                state=TaskState.BROKEN.value, state_reason=reason, update_time=at, end_time=at))
            record_event(conn, task_id, TaskState.BROKEN.value, str(state), reason, at)
            return True

    def _lock_task(self, conn: Connection, task_id: int) -> Task | None:
        row = conn.execute(self._locked(select(tasks).where(tasks.c.task_id == task_id))).first()
        return task_of(row) if row else None

    @staticmethod
    def _change(conn: Connection, task: Task, change: TaskChange, at: datetime) -> None:
        """Apply a rule's change to the task, its row and its history: a transition (checked
        by the state machine), a decision that keeps the state, or other values only."""
        values: dict[str, Any] = change.values()
        new = change.state if change.state is not None else task.state
        if new != task.state:
            check_transition(task.task_id, task.state, new)
            values.update(state_reason=change.reason or "", update_time=at)
            if new in FINAL_STATES:
                values["end_time"] = at
        elif change.reason is not None:
            values.update(state_reason=change.reason, update_time=at)
        if new == task.state and not values:
            return
        conn.execute(update(tasks).where(tasks.c.task_id == task.task_id).values(state=new.value, **values))
        if "state_reason" in values:
            record_event(conn, task.task_id, new.value, task.state.value, values["state_reason"], at)
        task.state = new
        for name, value in values.items():
            setattr(task, name, value)
