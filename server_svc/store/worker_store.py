"""Harvester's workers: their reports written in one transaction per batch (bulk statements),
read one by one with their jobs, listed newest first, and counted by state."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, func, select, true, tuple_

from panda_runtime.contracts.harvester import LIVE_WORKER_STATES
from panda_runtime.service.bulk import insert_statement, run_statements, update_statement
from panda_runtime.service.db import Store, aware
from panda_runtime.service.errors import NotFound, ServiceError
from panda_runtime.service.principals import Principal
from server_svc.domain.harvester import check_speaker
from server_svc.domain.harvester_workers import Worker, WorkerReport, decide_reports, readable_worker_ids
from server_svc.store.harvester_rows import lock_instance
from server_svc.store.tables import harvester_queue_configs, harvester_workers, jobs

__all__ = ["WORKER_COLUMNS", "WorkerStore", "count_live_workers", "worker_from_row"]

WORKER_COLUMNS = tuple(str(column.name) for column in harvester_workers.columns)
# What a report may change of a known worker (not its id, instance, queue or first report).
_CHANGING = tuple(name for name in WORKER_COLUMNS if name not in ("worker_id", "harvester_id", "queue", "create_time"))
_TIMES = ("submit_time", "start_time", "end_time", "create_time", "update_time")
assert {f.name for f in fields(Worker)} == {*WORKER_COLUMNS, "job_ids"}, "Worker names the workers table's columns"

# Built once (GetWorker's reads).
_WORKER = select(harvester_workers).where(harvester_workers.c.worker_id == bindparam("worker_id"))
_JOBS_OF_WORKER = select(jobs.c.job_id).where(jobs.c.worker_id == bindparam("worker_id")).order_by(jobs.c.job_id)


def worker_from_row(row: Mapping[Any, Any]) -> Worker:
    values = {name: row[name] for name in WORKER_COLUMNS}
    for name in _TIMES:
        values[name] = aware(values[name])
    return Worker(**values)


def count_live_workers(conn: Connection, column: ColumnElement[str],
                       keys: Collection[str]) -> dict[str, dict[str, int]]:
    """Live workers by state, for each of `keys` (instances or queues, as `column` says); read
    from the counts index alone."""
    if not keys:
        return {}
    rows = conn.execute(
        select(column, harvester_workers.c.state, func.count())
        .where(harvester_workers.c.state.in_(sorted(LIVE_WORKER_STATES)), column.in_(sorted(keys)))
        .group_by(column, harvester_workers.c.state)
    )
    counts: dict[str, dict[str, int]] = {}
    for key, state, number in rows:
        counts.setdefault(key, {})[state] = number
    return counts


class WorkerStore(Store):
    def report(self, harvester_id: str, reports: Sequence[WorkerReport], caller: Principal,
               now: datetime) -> list[ServiceError | None]:
        """An instance's reports, in one transaction: each worker's outcome, in order (None:
        applied). The instance's row is locked first, so its reports are written one at a time."""
        with self._engine.begin() as conn:
            check_speaker(lock_instance(conn, harvester_id, self._sqlite), harvester_id, caller)
            provisioned = set(conn.execute(
                select(harvester_queue_configs.c.queue_id).where(harvester_queue_configs.c.harvester_id == harvester_id)
            ).scalars())
            ids = readable_worker_ids(reports, harvester_id)
            stored = {}
            if ids:
                rows = conn.execute(select(harvester_workers).where(harvester_workers.c.worker_id.in_(ids)))
                stored = {row.worker_id: worker_from_row(row._mapping) for row in rows}
            decision = decide_reports(harvester_id, reports, stored, provisioned, now)
            run_statements(conn, [
                insert_statement(conn, harvester_workers, decision.inserts, WORKER_COLUMNS),
                update_statement(conn, harvester_workers, "worker_id", decision.updates, _CHANGING),
            ])
        return decision.results

    def get(self, worker_id: str) -> Worker:
        """The worker with the ids of the jobs sent to its pilot, oldest first."""
        with self._engine.connect() as conn:
            row = conn.execute(_WORKER, {"worker_id": worker_id}).first()
            if row is None:
                raise NotFound(f"worker {worker_id} not found", resource_type="worker",
                               resource_name=f"workers/{worker_id}")
            worker = worker_from_row(row._mapping)
            worker.job_ids = list(conn.execute(_JOBS_OF_WORKER, {"worker_id": worker_id}).scalars())
        return worker

    def list_workers(self, *, queue: str, states: Collection[str], harvester_id: str,
                     after: tuple[datetime, str] | None, limit: int) -> tuple[list[Worker], int]:
        """The workers the filters select (each given one must hold), newest first from the one
        after `after` (its create_time and id), and how many there are in all."""
        table = harvester_workers
        condition: ColumnElement[bool] = and_(
            true(),
            *([table.c.queue == queue] if queue else []),
            *([table.c.state.in_(sorted(states))] if states else []),
            *([table.c.harvester_id == harvester_id] if harvester_id else []),
        )
        query = select(table).where(condition).order_by(table.c.create_time.desc(), table.c.worker_id.desc())
        if after is not None:
            query = query.where(tuple_(table.c.create_time, table.c.worker_id) < tuple_(*after))
        with self._engine.connect() as conn:
            total: int = conn.execute(select(func.count()).select_from(table).where(condition)).scalar_one()
            workers = [worker_from_row(row._mapping) for row in conn.execute(query.limit(limit))]
        return workers, total
