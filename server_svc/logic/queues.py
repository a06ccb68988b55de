"""What the queue API does, over the queue store; the dispatch hub hears of every change."""

from __future__ import annotations

from typing import Any

from panda_runtime.service.db import DbRunner
from server_svc.domain.queues import Queue
from server_svc.logic.dispatch_hub import DispatchHub
from server_svc.store.queue_store import QueueStore

__all__ = ["QueueOperations"]


class QueueOperations:
    def __init__(self, db: DbRunner, queues: QueueStore, hub: DispatchHub) -> None:
        self._db = db
        self._queues = queues
        self._hub = hub

    async def create(self, values: dict[str, Any]) -> Queue:
        queue = await self._db.run(self._queues.create, values)
        self._hub.queues_changed()
        return queue

    async def update(self, queue_id: str, values: dict[str, Any]) -> Queue:
        queue = await self._db.run(self._queues.update, queue_id, values)
        self._hub.queues_changed()
        return queue

    async def get(self, queue_id: str) -> Queue:
        return await self._db.run(self._queues.get, queue_id)

    async def list_queues(self, *, status: str, after: str, limit: int) -> list[Queue]:
        return await self._db.run(self._queues.list_queues, status=status, after=after, limit=limit)

    async def exists(self, queue_id: str) -> bool:
        return await self._db.run(self._queues.exists, queue_id)

    def connected_pilots(self, queue_id: str) -> int:
        """Pilots of the queue connected to this server."""
        return self._hub.connected(queue_id)
