"""Tasks as users see them: submission, look-ups, history, and the commands they send.
Each method is one transaction; a command that must reach the server leaves a row in
jedi_commands for the commander agent, in the same transaction as the state change."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from jedi_svc.domain import states
from jedi_svc.domain.progress import FILE_STATUS_PRECEDENCE, FINISHED, READY, Progress
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.task_spec import TaskSpec
from jedi_svc.store.common import condition, record_event
from jedi_svc.store.tables import commands, contents, datasets, files, jobs, task_events, tasks
from panda_runtime.service.db import Store, now, scope_condition
from panda_runtime.service.errors import AlreadyExists, InvalidArgument, NotFound
from panda_runtime.service.filtering import Comparison
from panda_runtime.service.principals import EVERYTHING, Scope

_FILTER_COLUMNS = {
    "task_id": tasks.c.task_id, "task_name": tasks.c.task_name, "owner": tasks.c.owner, "vo": tasks.c.vo,
    "working_group": tasks.c.working_group, "state": tasks.c.state, "priority": tasks.c.priority,
    "create_time": tasks.c.create_time, "update_time": tasks.c.update_time,
}

EMPTY_SCOUT_REPORT = {"jobs": 0, "succeeded": 0, "failed": 0, "memory_mb": 0, "walltime_seconds": 0,
                      "cpu_seconds": 0.0, "applied": False}


def task_not_found(task_id: int) -> NotFound:
    return NotFound(f"task {task_id} not found", resource_type="task", resource_name=f"tasks/{task_id}")


class TaskStore(Store):
    # -- submitting --------------------------------------------------------------------

    def submit(self, spec: TaskSpec, params: dict[str, Any], request_id: str = "") -> dict[str, Any]:
        """Store a task REGISTERED with its (empty) output dataset. A repeated request_id
        returns the task the first call made."""
        at = now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = conn.execute(select(tasks.c.task_id).where(tasks.c.request_id == request_id)).scalar()
                if earlier is not None:
                    return self._get(conn, earlier, history=True)
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
                "next_serial": 1, "next_batch": 1, "request_id": request_id or None, "token": uuid.uuid4().hex,
                "create_time": at, "update_time": at,
            }).scalar_one()
            dataset_id = conn.execute(insert(datasets).returning(datasets.c.dataset_id), {
                "name": spec.output_dataset, "kind": "output", "owner": spec.owner, "task_id": task_id,
                "create_time": at, "update_time": at,
            }).scalar_one()
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(output_dataset_id=dataset_id))
            record_event(conn, task_id, TaskState.REGISTERED.value, "",
                         f"submitted by {spec.owner}: {len(spec.input_datasets)} input dataset(s), "
                         f"{spec.split.describe()}, output {spec.output_dataset}", at)
            return self._get(conn, task_id, history=True)

    # -- reading -----------------------------------------------------------------------

    def get(self, task_id: int, *, history: bool = True) -> dict[str, Any]:
        with self._engine.connect() as conn:
            return self._get(conn, task_id, history=history)

    def _get(self, conn: Connection, task_id: int, *, history: bool) -> dict[str, Any]:
        row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).first()
        if row is None:
            raise task_not_found(task_id)
        task = dict(row._mapping)
        self._attach(conn, [task])
        task["history"] = []
        if history:
            events = conn.execute(
                select(task_events).where(task_events.c.task_id == task_id).order_by(task_events.c.cursor)
            )
            task["history"] = [dict(e._mapping) for e in events]
        return task

    def _attach(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Progress, job counts and output totals of each task."""
        ids = [r["task_id"] for r in rows]
        if not ids:
            return
        # Files by status, counted by the database (a task may have a million files): each
        # file's status from its chunks' by the rule of domain.progress.file_status.
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
        names = dict(conn.execute(select(datasets.c.dataset_id, datasets.c.name)
                                  .where(datasets.c.task_id.in_(ids), datasets.c.kind == "output")).all())
        for row in rows:
            task_id = row["task_id"]
            row["progress"] = Progress.from_counts(files_by_status[task_id])
            row["job_counts"] = job_counts[task_id]
            row["output_files"], row["output_bytes"] = outputs.get(task_id, (0, 0))
            row["output_dataset"] = names.get(row["output_dataset_id"], "")

    def list(self, comparisons: list[Comparison], *, limit: int, before: int = 0,
             scope: Scope = EVERYTHING) -> tuple[list[dict[str, Any]], int]:
        where = and_(scope_condition(scope, tasks.c.owner, tasks.c.vo),
                     *[condition(_FILTER_COLUMNS[c.field], c) for c in comparisons])
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(tasks).where(where)).scalar_one()
            query = select(tasks).where(where).order_by(tasks.c.task_id.desc()).limit(limit)
            if before:
                query = query.where(tasks.c.task_id < before)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            self._attach(conn, rows)
        for row in rows:
            row["history"] = []
        return rows, total

    def events_after(self, cursor: int, *, task_id: int = 0, limit: int = 500,
                     scope: Scope = EVERYTHING) -> list[dict[str, Any]]:
        query = select(task_events).where(task_events.c.cursor > cursor).order_by(task_events.c.cursor).limit(limit)
        if not scope.everything:
            visible = select(tasks.c.task_id).where(scope_condition(scope, tasks.c.owner, tasks.c.vo))
            query = query.where(task_events.c.task_id.in_(visible))
        if task_id:
            query = query.where(task_events.c.task_id == task_id)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def last_cursor(self) -> int:
        with self._engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(task_events.c.cursor), 0))).scalar_one()

    def count_by_state(self) -> dict[str, int]:
        with self._engine.connect() as conn:
            return dict(conn.execute(select(tasks.c.state, func.count()).group_by(tasks.c.state)).all())

    # -- commands ----------------------------------------------------------------------

    def command(
        self, task_id: int, kind: str, *, reason: str = "", queues: Sequence[str] = (), priority: int = 0
    ) -> dict[str, Any]:
        """Apply a user's command, if the task's state accepts it (else FAILED_PRECONDITION)."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(self._locked(select(tasks).where(tasks.c.task_id == task_id))).first()
            if row is None:
                raise task_not_found(task_id)
            current = TaskState(row.state)
            states.check_command(task_id, kind, current)
            values: dict[str, Any] = {"update_time": at}
            new = current
            note = f"{kind}" + (f": {reason}" if reason else "")
            if kind == "kill":
                new = TaskState.ABORTING
                conn.execute(update(contents).where(contents.c.task_id == task_id, contents.c.status == "ready")
                             .values(status="cancelled"))
                self._queue_command(conn, task_id, "kill", {"reason": reason or "task killed"}, at)
            elif kind == "finish":
                new = TaskState.FINISHING
                self._queue_command(conn, task_id, "finish", {"reason": reason or "task finished by request"}, at)
            elif kind == "retry":
                new = TaskState.TORETRY
                values["end_time"] = None
            elif kind == "pause":
                new = TaskState.PAUSED
                values["resume_state"] = row.resume_state if current == TaskState.PENDING else current.value
            elif kind == "resume":
                new = TaskState(row.resume_state or TaskState.READY.value)
                values["resume_state"] = ""
                values["wait_until"] = None
            elif kind == "reassign":
                if not queues:
                    raise InvalidArgument("give at least one queue", field="queues")
                values["queues"] = list(dict.fromkeys(queues))
                values["excluded_queues"] = [q for q in row.excluded_queues if q not in queues]
                values["wait_until"] = None
                note = f"reassign to {', '.join(values['queues'])}" + (f": {reason}" if reason else "")
                if current == TaskState.PENDING:
                    new = TaskState(row.resume_state or TaskState.READY.value)
                self._queue_command(conn, task_id, "reassign", {"queues": values["queues"]}, at)
            elif kind == "priority":
                values["priority"] = priority
                note = f"priority {row.priority} -> {priority}"
                self._queue_command(conn, task_id, "priority", {"priority": priority}, at)
            if new != current:
                states.check_transition(task_id, current, new)
                values["state"] = new.value
                values["state_reason"] = note
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(**values))
            record_event(conn, task_id, new.value, current.value, note, at)
            return self._get(conn, task_id, history=True)

    @staticmethod
    def _queue_command(conn: Connection, task_id: int, kind: str, args: dict[str, Any], at: Any) -> None:
        conn.execute(insert(commands).values(task_id=task_id, kind=kind, args=args, create_time=at))
