"""Tasks as users see them: submission, look-ups, history, and the commands they send.
Each method is one transaction; a command that must reach the server leaves a row in
jedi_commands for the commander agent, in the same transaction as the state change."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from jedi_svc.domain import commands
from jedi_svc.domain.progress import CANCELLED, FILE_STATUS_PRECEDENCE, FINISHED, READY, Progress
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.task_spec import TaskSpec
from jedi_svc.domain.tasks import EMPTY_SCOUT_REPORT
from jedi_svc.store.common import earlier_request, record_event
from jedi_svc.store.records import TaskEvent, TaskView, task_of
from jedi_svc.store.tables import commands as command_rows
from jedi_svc.store.tables import contents, datasets, files, jobs, task_events, tasks
from panda_runtime.service.db import Store, now, scope_condition
from panda_runtime.service.errors import AlreadyExists, NotFound
from panda_runtime.service.filtering import Filter
from panda_runtime.service.idempotency import check_replay
from panda_runtime.service.listing import (
    GroupCounts,
    after_position,
    compare,
    count_groups,
    filter_condition,
    order_clauses,
)
from panda_runtime.service.ordering import Ordering, SortKey
from panda_runtime.service.principals import EVERYTHING, Scope

_FILTER_COLUMNS = {
    "task_id": tasks.c.task_id, "task_name": tasks.c.task_name, "owner": tasks.c.owner, "vo": tasks.c.vo,
    "working_group": tasks.c.working_group, "state": tasks.c.state, "priority": tasks.c.priority,
    "create_time": tasks.c.create_time, "update_time": tasks.c.update_time,
}
NEWEST_FIRST = Ordering((SortKey("task_id", True),))

__all__ = ["TaskStore", "task_not_found"]


def task_not_found(task_id: int) -> NotFound:
    return NotFound(f"task {task_id} not found", resource_type="task", resource_name=f"tasks/{task_id}")


class TaskStore(Store):
    # -- submitting --------------------------------------------------------------------

    def submit(self, spec: TaskSpec, params: dict[str, Any], request_id: str = "", *, caller: str = "",
               digest: str = "") -> TaskView:
        """Store a task REGISTERED with its (empty) output dataset. A request_id is the
        caller's: the same caller repeating it with the same request (`digest`) gets the task
        the first call made, with another request ALREADY_EXISTS."""
        at = now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = earlier_request(conn, tasks, tasks.c.task_id, request_id, caller, spec.owner,
                                          locked=not self._sqlite)
                if earlier is not None:
                    check_replay(earlier[1], digest, request_id)
                    return self._get(conn, earlier[0], history=True)
            if conn.execute(select(datasets.c.dataset_id).where(datasets.c.name == spec.output_dataset)).first():
                raise AlreadyExists(f"output dataset {spec.output_dataset} already exists: choose a new name")
            task_id = conn.execute(insert(tasks).returning(tasks.c.task_id), {
                "task_name": spec.task_name, "owner": spec.owner, "vo": spec.vo, "working_group": spec.working_group,
                "state": TaskState.REGISTERED.value, "state_reason": "", "resume_state": "", "params": params,
                "split_kind": spec.split.kind, "split_value": spec.split.value, "priority": spec.priority,
                "queues": spec.queues, "excluded_queues": spec.excluded_queues, "cores": spec.cores,
                "memory_mb": spec.memory_mb, "walltime_seconds": spec.walltime_seconds, "disk_mb": spec.disk_mb,
                "max_attempts": spec.max_attempts, "scout_jobs": spec.scout_jobs,
                "max_failure_rate": spec.max_failure_rate, "scouted": spec.scout_jobs == 0,
                "scout_report": dict(EMPTY_SCOUT_REPORT), "jobs_finished": 0, "jobs_failed": 0,
                "next_serial": 1, "next_batch": 1, "request_id": request_id or None,
                "request_caller": caller if request_id else None, "request_digest": digest if request_id else None,
                "token": uuid.uuid4().hex,
                "create_time": at, "update_time": at,
            }).scalar_one()
            dataset_id = conn.execute(insert(datasets).returning(datasets.c.dataset_id), {
                "name": spec.output_dataset, "kind": "output", "owner": spec.owner, "scope": spec.output_scope,
                "task_id": task_id,
                "create_time": at, "update_time": at,
            }).scalar_one()
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(output_dataset_id=dataset_id))
            record_event(conn, task_id, TaskState.REGISTERED.value, "",
                         f"submitted by {spec.owner}: {len(spec.input_datasets)} input dataset(s), "
                         f"{spec.split.describe()}, output {spec.output_dataset}", at)
            return self._get(conn, task_id, history=True)

    # -- reading -----------------------------------------------------------------------

    def get(self, task_id: int, *, history: bool = True) -> TaskView:
        with self._engine.connect() as conn:
            return self._get(conn, task_id, history=history)

    def _get(self, conn: Connection, task_id: int, *, history: bool) -> TaskView:
        row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).first()
        if row is None:
            raise task_not_found(task_id)
        (view,) = self._views(conn, [row])
        if history:
            events = conn.execute(
                select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.cursor)
            )
            view.history = [TaskEvent(**e._mapping) for e in events]
        return view

    def _views(self, conn: Connection, rows: Sequence[Any]) -> list[TaskView]:
        """Each task with its progress, job counts and output totals."""
        found = [task_of(r) for r in rows]
        ids = [t.task_id for t in found]
        if not ids:
            return []
        progress = self._progress(conn, ids)
        job_counts: dict[int, dict[str, int]] = {i: {} for i in ids}
        query = (select(jobs.c.task_id, jobs.c.state, func.count().label("n")).where(jobs.c.task_id.in_(ids))
                 .group_by(jobs.c.task_id, jobs.c.state))
        for count in conn.execute(query):
            job_counts[count.task_id][count.state] = count.n
        outputs: dict[int, tuple[int, int]] = {}
        query = (select(datasets.c.task_id, func.count(files.c.file_id).label("n"),
                        func.coalesce(func.sum(files.c.size_bytes), 0).label("size"))
                 .select_from(datasets.join(files, files.c.dataset_id == datasets.c.dataset_id))
                 .where(datasets.c.task_id.in_(ids), datasets.c.kind == "output").group_by(datasets.c.task_id))
        for out in conn.execute(query):
            outputs[out.task_id] = (out.n, int(out.size))
        names = {r.dataset_id: r.name for r in conn.execute(
            select(datasets.c.dataset_id, datasets.c.name).where(datasets.c.task_id.in_(ids),
                                                                 datasets.c.kind == "output"))}
        return [
            TaskView(task, progress[task.task_id], job_counts[task.task_id], *outputs.get(task.task_id, (0, 0)),
                     output_dataset=names.get(task.output_dataset_id or 0, ""))
            for task in found
        ]

    @staticmethod
    def _progress(conn: Connection, ids: list[int]) -> dict[int, Progress]:
        """Each task's files by status, counted by the database (a task may have a million
        files): each file's status from its chunks' by the rule of domain.progress.file_status."""
        chunk_status = contents.c.status

        def some_chunk(status: str) -> ColumnElement[bool]:
            return func.max(case((chunk_status == status, 1), else_=0)) == 1

        per_file = (
            select(contents.c.task_id, case(
                (and_(func.min(chunk_status) == FINISHED, func.max(chunk_status) == FINISHED), FINISHED),
                *[(some_chunk(status), status) for status in FILE_STATUS_PRECEDENCE],
                else_=READY,
            ).label("status"))
            .where(contents.c.task_id.in_(ids))
            .group_by(contents.c.task_id, contents.c.file_id)
            .subquery()
        )
        files_by_status: dict[int, dict[str, int]] = {i: {} for i in ids}
        query = (select(per_file.c.task_id, per_file.c.status, func.count().label("n"))
                 .group_by(per_file.c.task_id, per_file.c.status))
        for count in conn.execute(query):
            files_by_status[count.task_id][count.status] = count.n
        return {task_id: Progress.from_counts(counts) for task_id, counts in files_by_status.items()}

    def list_tasks(self, where: Filter, *, limit: int, ordering: Ordering = NEWEST_FIRST,
                   after: Sequence[Any] | None = None, scope: Scope = EVERYTHING) -> tuple[list[TaskView], int]:
        """The tasks `scope` covers that `where` selects, sorted by `ordering`, from the one after
        the position `after` (its sort-key values, the id last); and the total matching."""
        condition_ = and_(scope_condition(scope, tasks.c.owner, tasks.c.vo), self._where(where))
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(tasks).where(condition_)).scalar_one()
            query = select(tasks).where(condition_).order_by(*order_clauses(ordering, _FILTER_COLUMNS)).limit(limit)
            if after is not None:
                query = query.where(after_position(ordering, _FILTER_COLUMNS, after))
            views = self._views(conn, conn.execute(query).all())
        return views, total

    def count_tasks(self, where: Filter, group_by: Sequence[str], *, limit: int,
                    scope: Scope = EVERYTHING) -> GroupCounts:
        """The tasks `scope` covers that `where` selects, counted by the database in groups of
        equal `group_by` values: the `limit` largest groups and the total."""
        condition_ = and_(scope_condition(scope, tasks.c.owner, tasks.c.vo), self._where(where))
        with self._engine.connect() as conn:
            return count_groups(conn, tasks, condition_, [_FILTER_COLUMNS[name] for name in group_by], limit)

    @staticmethod
    def _where(where: Filter) -> ColumnElement[bool]:
        return filter_condition(where, lambda c: compare(_FILTER_COLUMNS[c.field], c))

    def events_after(self, cursor: int, *, task_id: int = 0, limit: int = 500,
                     scope: Scope = EVERYTHING) -> list[TaskEvent]:
        query = select(task_events).where(task_events.c.cursor > cursor).order_by(task_events.c.cursor).limit(limit)
        if not scope.everything:
            visible = select(tasks.c.task_id).where(scope_condition(scope, tasks.c.owner, tasks.c.vo))
            query = query.where(task_events.c.task_id.in_(visible))
        if task_id:
            query = query.where(task_events.c.task_id == task_id)
        with self._engine.connect() as conn:
            return [TaskEvent(**r._mapping) for r in conn.execute(query)]

    def last_cursor(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(task_events.c.cursor), 0))).scalar_one())

    def count_by_state(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            return {r.state: r.n for r in conn.execute(
                select(tasks.c.state, func.count().label("n")).group_by(tasks.c.state))}

    # -- commands ----------------------------------------------------------------------

    def command(
        self, task_id: int, kind: str, *, reason: str = "", queues: Sequence[str] = (), priority: int = 0
    ) -> TaskView:
        """Apply a user's command, if the task's state accepts it (else FAILED_PRECONDITION)."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(select(tasks).where(tasks.c.task_id == task_id))).first()
            if row is None:
                raise task_not_found(task_id)
            task = task_of(row)
            accepted = commands.accept(task, kind, reason=reason, queues=list(queues), priority=priority)
            if accepted.cancel_ready:
                conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.status == READY)
                             .values(status=CANCELLED))
            if accepted.work is not None:
                conn.execute(insert(command_rows).values(task_id=task_id, kind=accepted.work[0],
                                                         args=accepted.work[1], create_time=at))
            values: dict[str, Any] = {"update_time": at, **accepted.change.values()}
            if accepted.state != task.state:
                values.update(state=accepted.state.value, state_reason=accepted.note)
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(**values))
            record_event(conn, task_id, accepted.state.value, task.state.value, accepted.note, at)
            return self._get(conn, task_id, history=True)
