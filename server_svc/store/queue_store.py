"""Queues: the registry of where jobs run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from panda_runtime.service.errors import AlreadyExists, NotFound
from server_svc.store.tables import jobs, queues

QUEUE_STATUSES = ("online", "offline", "test", "brokeroff")
# Statuses whose pilots get jobs.
DISPATCHING_STATUSES = frozenset({"online", "test", "brokeroff"})


@dataclass
class QueueRecord:
    queue_id: str
    status: str
    max_cores: int
    max_memory_mb: int
    max_walltime_seconds: int
    max_disk_mb: int
    storage_element: str
    description: str
    create_time: datetime
    update_time: datetime
    job_counts: dict[str, int]


def _record(row: Any, counts: dict[str, int] | None = None) -> QueueRecord:
    values = {column.name: row._mapping[column.name] for column in queues.columns}
    return QueueRecord(**values, job_counts=counts or {})


class QueueStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(self, values: dict[str, Any]) -> QueueRecord:
        now = datetime.now(UTC)
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(queues).values(**values, create_time=now, update_time=now))
        except IntegrityError as error:
            raise AlreadyExists(f"queue {values['queue_id']} already exists") from error
        return self.get(values["queue_id"])

    def get(self, queue_id: str) -> QueueRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(queues).where(queues.c.queue_id == queue_id)).first()
            if row is None:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
            return _record(row, self._counts(conn, [queue_id]).get(queue_id, {}))

    def exists(self, queue_id: str) -> bool:
        with self._engine.connect() as conn:
            found = conn.execute(select(queues.c.queue_id).where(queues.c.queue_id == queue_id)).first()
            return found is not None

    def list(self, *, status: str = "", after: str = "", limit: int = 100) -> list[QueueRecord]:
        query = select(queues).order_by(queues.c.queue_id).limit(limit)
        if status:
            query = query.where(queues.c.status == status)
        if after:
            query = query.where(queues.c.queue_id > after)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            counts = self._counts(conn, [r.queue_id for r in rows])
        return [_record(r, counts.get(r.queue_id, {})) for r in rows]

    def update(self, queue_id: str, values: dict[str, Any]) -> QueueRecord:
        with self._engine.begin() as conn:
            result = conn.execute(
                update(queues)
                .where(queues.c.queue_id == queue_id)
                .values(**values, update_time=datetime.now(UTC))
            )
            if result.rowcount == 0:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
        return self.get(queue_id)

    def statuses(self) -> dict[str, QueueRecord]:
        with self._engine.connect() as conn:
            return {r.queue_id: _record(r) for r in conn.execute(select(queues))}

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(queue, state) -> number of jobs, for the metrics."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(jobs.c.queue, jobs.c.state, func.count()).group_by(jobs.c.queue, jobs.c.state))
            return {(q, s): n for q, s, n in rows}

    @staticmethod
    def _counts(conn: Any, queue_ids: list[str]) -> dict[str, dict[str, int]]:
        if not queue_ids:
            return {}
        rows = conn.execute(
            select(jobs.c.queue, jobs.c.state, func.count())
            .where(jobs.c.queue.in_(queue_ids))
            .group_by(jobs.c.queue, jobs.c.state)
        )
        counts: dict[str, dict[str, int]] = {}
        for queue_id, state, number in rows:
            counts.setdefault(queue_id, {})[state] = number
        return counts
