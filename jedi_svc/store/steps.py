"""What the agents' stores share. Each step of an agent is one transaction that takes the
task's row lock first (PostgreSQL; SQLite has one writer), so agents running side by side
never see a task half-changed, and everything an agent needs to resume after a crash is in
the tables: a step either happened entirely or not at all."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, select, update

from jedi_svc.domain.states import FINAL_STATES, TaskState, check_transition
from jedi_svc.domain.tasks import Task, TaskChange
from jedi_svc.store.common import record_event
from jedi_svc.store.records import TaskHead, task_of
from jedi_svc.store.tables import tasks
from panda_runtime.service.db import Store, aware

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
