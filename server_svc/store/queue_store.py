"""Queues: the registry of where jobs run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from panda_runtime.service.db import Store, aware
from panda_runtime.service.errors import AlreadyExists, NotFound
from server_svc.domain.gauges import JobCensus
from server_svc.domain.queues import Queue
from server_svc.domain.states import JobState
from server_svc.domain.storage import check_queue_storage
from server_svc.store.storage_store import read_elements
from server_svc.store.tables import jobs, queues

__all__ = ["QueueStore", "queue_from_row"]

_COLUMNS = tuple(str(column.name) for column in queues.columns)


def queue_from_row(row: Mapping[Any, Any], counts: dict[str, int] | None = None) -> Queue:
    return Queue(**{name: row[name] for name in _COLUMNS}, job_counts=counts or {})


class QueueStore(Store):
    def create(self, values: dict[str, Any]) -> Queue:
        now = datetime.now(UTC)
        try:
            with self._engine.begin() as conn:
                self._check_storage(conn, values["queue_id"], values)
                conn.execute(insert(queues).values(**values, create_time=now, update_time=now))
        except IntegrityError as error:
            raise AlreadyExists(f"queue {values['queue_id']} already exists") from error
        return self.get(values["queue_id"])

    def get(self, queue_id: str) -> Queue:
        with self._engine.connect() as conn:
            row = conn.execute(select(queues).where(queues.c.queue_id == queue_id)).first()
            if row is None:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
            return queue_from_row(row._mapping, self._counts(conn, [queue_id]).get(queue_id, {}))

    def exists(self, queue_id: str) -> bool:
        with self._engine.connect() as conn:
            found = conn.execute(select(queues.c.queue_id).where(queues.c.queue_id == queue_id)).first()
            return found is not None

    def list_queues(self, *, status: str = "", after: str = "", limit: int = 100) -> list[Queue]:
        query = select(queues).order_by(queues.c.queue_id).limit(limit)
        if status:
            query = query.where(queues.c.status == status)
        if after:
            query = query.where(queues.c.queue_id > after)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            counts = self._counts(conn, [r.queue_id for r in rows])
        return [queue_from_row(r._mapping, counts.get(r.queue_id, {})) for r in rows]

    def update(self, queue_id: str, values: dict[str, Any]) -> Queue:
        with self._engine.begin() as conn:
            self._check_storage(conn, queue_id, values)
            result = conn.execute(
                update(queues)
                .where(queues.c.queue_id == queue_id)
                .values(**values, update_time=datetime.now(UTC))
            )
            if result.rowcount == 0:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
        return self.get(queue_id)

    def statuses(self) -> dict[str, str]:
        """Every queue's status, by queue id."""
        with self._engine.connect() as conn:
            return {r.queue_id: r.status for r in conn.execute(select(queues))}

    def census(self) -> JobCensus:
        """For the metrics: the configured queues, jobs by (queue, state), and when the oldest
        activated job of each queue became activated."""
        with self._engine.connect() as conn:
            configured = frozenset(conn.execute(select(queues.c.queue_id)).scalars())
            counts = conn.execute(select(jobs.c.queue, jobs.c.state, func.count()).group_by(jobs.c.queue, jobs.c.state))
            oldest = conn.execute(
                select(jobs.c.queue, func.min(jobs.c.state_time))
                .where(jobs.c.state == JobState.ACTIVATED.value)
                .group_by(jobs.c.queue)
            )
            return JobCensus(
                queues=configured,
                counts={(queue, state): number for queue, state, number in counts},
                oldest_activated={queue: when for queue, since in oldest if (when := aware(since)) is not None},
            )

    @staticmethod
    def _check_storage(conn: Connection, queue_id: str, values: dict[str, Any]) -> None:
        """The storage element a queue is given must be configured and serve the queue."""
        element_id = str(values.get("storage_element", ""))
        if element_id:
            element = read_elements(conn, [element_id]).get(element_id)
            check_queue_storage(queue_id, element_id, element, "queue.storage_element")

    @staticmethod
    def _counts(conn: Connection, queue_ids: list[str]) -> dict[str, dict[str, int]]:
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
