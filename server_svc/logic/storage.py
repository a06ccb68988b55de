"""What the storage element API does, over the storage store."""

from __future__ import annotations

from typing import Any

from panda_runtime.service.db import DbRunner
from server_svc.domain.storage import StorageElement
from server_svc.store.storage_store import StorageStore

__all__ = ["StorageOperations"]


class StorageOperations:
    def __init__(self, db: DbRunner, store: StorageStore) -> None:
        self._db = db
        self._store = store

    async def create(self, values: dict[str, Any]) -> StorageElement:
        return await self._db.run(self._store.create, values)

    async def get(self, element_id: str) -> StorageElement:
        return await self._db.run(self._store.get, element_id)

    async def list_elements(self, *, after: str, limit: int) -> list[StorageElement]:
        return await self._db.run(self._store.list_elements, after=after, limit=limit)

    async def update(self, element_id: str, values: dict[str, Any]) -> StorageElement:
        return await self._db.run(self._store.update, element_id, values)
