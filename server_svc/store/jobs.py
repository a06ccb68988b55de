"""Reading jobs: one with its files and history, or a page of those a filter selects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.sql import ColumnElement

from panda_runtime.service.db import Store, scope_condition
from panda_runtime.service.errors import NotFound
from panda_runtime.service.filtering import Comparison, Filter
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
from server_svc.domain.jobs import JobRecord
from server_svc.store.events import event_from_row
from server_svc.store.job_rows import read_files, record_from_row
from server_svc.store.tables import job_events, jobs

__all__ = ["JobStore"]

_FILTER_COLUMNS: dict[str, ColumnElement[Any]] = {
    "job_id": jobs.c.job_id, "state": jobs.c.state, "queue": jobs.c.queue, "owner": jobs.c.owner,
    "vo": jobs.c.vo, "task_id": jobs.c.task_id, "priority": jobs.c.priority, "attempt": jobs.c.attempt,
    "error_code": jobs.c.error_code, "create_time": jobs.c.create_time, "update_time": jobs.c.update_time,
    "label": jobs.c.label, "pilot_id": jobs.c.pilot_id, "node": jobs.c.node, "worker_id": jobs.c.worker_id,
}
NEWEST_FIRST = Ordering((SortKey("job_id", True),))


# Built once: building a statement and its cache key cost more than running it (GetJob's reads).
_JOB = select(jobs).where(jobs.c.job_id == bindparam("job_id"))
_HISTORY = select(job_events).where(job_events.c.job_id == bindparam("job_id")).order_by(job_events.c.cursor)


def _condition(comparison: Comparison) -> ColumnElement[bool]:
    return compare(_FILTER_COLUMNS[comparison.field], comparison)


class JobStore(Store):
    def get(self, job_id: int, *, history: bool = True) -> JobRecord:
        with self._engine.connect() as conn:
            row = conn.execute(_JOB, {"job_id": job_id}).first()
            if row is None:
                raise NotFound(f"job {job_id} not found", resource_type="job", resource_name=f"jobs/{job_id}")
            job = record_from_row(dict(row._mapping), read_files(conn, [job_id])[job_id])
            if history:
                events = conn.execute(_HISTORY, {"job_id": job_id})
                job.history = [event_from_row(e._mapping) for e in events]
        return job

    def list_jobs(
        self, where: Filter, *, limit: int, ordering: Ordering = NEWEST_FIRST, after: Sequence[Any] | None = None,
        scope: Scope = EVERYTHING,
    ) -> tuple[list[JobRecord], int]:
        """The jobs `scope` covers that `where` selects, sorted by `ordering`, from the one after
        the position `after` (its sort-key values, the id last). Returns the page and the total
        matching."""
        condition = and_(scope_condition(scope, jobs.c.owner, jobs.c.vo), filter_condition(where, _condition))
        with self._engine.connect() as conn:
            total: int = conn.execute(select(func.count()).select_from(jobs).where(condition)).scalar_one()
            query = select(jobs).where(condition).order_by(*order_clauses(ordering, _FILTER_COLUMNS)).limit(limit)
            if after is not None:
                query = query.where(after_position(ordering, _FILTER_COLUMNS, after))
            rows = [dict(r._mapping) for r in conn.execute(query)]
            files = read_files(conn, [r["job_id"] for r in rows])
        return [record_from_row(row, files[row["job_id"]]) for row in rows], total

    def count_jobs(self, where: Filter, group_by: Sequence[str], *, limit: int,
                   scope: Scope = EVERYTHING) -> GroupCounts:
        """The jobs `scope` covers that `where` selects, counted by the database in groups of
        equal `group_by` values: the `limit` largest groups and the total."""
        condition = and_(scope_condition(scope, jobs.c.owner, jobs.c.vo), filter_condition(where, _condition))
        with self._engine.connect() as conn:
            return count_groups(conn, jobs, condition, [_FILTER_COLUMNS[name] for name in group_by], limit)
