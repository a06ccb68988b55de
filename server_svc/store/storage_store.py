"""Storage elements: the registry of where jobs read and write."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from panda_runtime.service.db import Store
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.errors import AlreadyExists, NotFound
from server_svc.domain.storage import StorageElement, check_no_overlap
from server_svc.store.tables import storage_elements

__all__ = ["StorageStore", "read_elements"]

_COLUMNS = tuple(str(column.name) for column in storage_elements.columns)


def _element(row: Mapping[Any, Any]) -> StorageElement:
    return StorageElement(**{name: row[name] for name in _COLUMNS})


def read_elements(conn: Connection, element_ids: Iterable[str]) -> dict[str, StorageElement]:
    """The configured elements among `element_ids`, by id."""
    wanted = sorted({e for e in element_ids if e})
    if not wanted:
        return {}
    rows = conn.execute(select(storage_elements).where(storage_elements.c.storage_element_id.in_(wanted)))
    return {row.storage_element_id: _element(row._mapping) for row in rows}


def _not_found(element_id: str) -> NotFound:
    return NotFound(f"storage element {element_id} not found", resource_type="storage element",
                    resource_name=f"storageElements/{element_id}")


class StorageStore(Store):
    def create(self, values: dict[str, Any]) -> StorageElement:
        """A new element; INVALID_ARGUMENT when its directory overlaps another's."""
        now = utc_now()
        try:
            with self._engine.begin() as conn:
                check_no_overlap(values["storage_element_id"], values["url"], self._all(conn),
                                 "storage_element.url")
                conn.execute(insert(storage_elements).values(**values, create_time=now, update_time=now))
        except IntegrityError as error:
            raise AlreadyExists(f"storage element {values['storage_element_id']} already exists") from error
        return self.get(values["storage_element_id"])

    def get(self, element_id: str) -> StorageElement:
        with self._engine.connect() as conn:
            found = read_elements(conn, [element_id]).get(element_id)
        if found is None:
            raise _not_found(element_id)
        return found

    def list_elements(self, *, after: str = "", limit: int = 100) -> list[StorageElement]:
        query = select(storage_elements).order_by(storage_elements.c.storage_element_id).limit(limit)
        if after:
            query = query.where(storage_elements.c.storage_element_id > after)
        with self._engine.connect() as conn:
            return [_element(row._mapping) for row in conn.execute(query)]

    def update(self, element_id: str, values: dict[str, Any]) -> StorageElement:
        with self._engine.begin() as conn:
            if "url" in values:
                check_no_overlap(element_id, values["url"], self._all(conn), "storage_element.url")
            result = conn.execute(
                update(storage_elements)
                .where(storage_elements.c.storage_element_id == element_id)
                .values(**values, update_time=utc_now())
            )
            if result.rowcount == 0:
                raise _not_found(element_id)
        return self.get(element_id)

    def _all(self, conn: Connection) -> list[StorageElement]:
        """Every element, for the overlap check; on PostgreSQL the table is locked against another
        writer until the transaction ends (SQLite's BEGIN IMMEDIATE already is such a lock)."""
        if not self._sqlite:
            conn.execute(text("LOCK TABLE storage_elements IN SHARE ROW EXCLUSIVE MODE"))
        # Few: a site has a handful of elements, not thousands.
        return [_element(row._mapping) for row in conn.execute(select(storage_elements))]
