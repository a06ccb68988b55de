"""Datasets and their files: registration, look-ups, and files with their state in a task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from jedi_svc.domain.chunks import TaskChunk, file_task_state
from jedi_svc.domain.datasets import DatasetFile, FileSpec
from jedi_svc.store.common import earlier_request
from jedi_svc.store.records import (
    CHUNK_COLUMNS,
    FILE_COLUMNS,
    REQUEST_KEY_COLUMNS,
    DatasetFileView,
    DatasetRecord,
    chunk_of,
    file_of,
)
from jedi_svc.store.tables import contents, datasets, files, jobs
from panda_runtime.service import bulk
from panda_runtime.service.db import Store, now
from panda_runtime.service.errors import AlreadyExists, InvalidArgument, NotFound
from panda_runtime.service.filtering import Filter
from panda_runtime.service.idempotency import check_replay
from panda_runtime.service.listing import after_position, compare, filter_condition, order_clauses
from panda_runtime.service.ordering import Ordering

__all__ = ["DatasetStore", "not_found"]

_FILTER_COLUMNS = {
    "dataset_id": datasets.c.name, "kind": datasets.c.kind, "owner": datasets.c.owner,
    "task_id": datasets.c.task_id, "create_time": datasets.c.create_time,
}


def _counts_query() -> Any:  # a Select of (dataset_id, file_count, total_bytes, total_events)
    return (
        select(
            files.c.dataset_id,
            func.count().label("file_count"),
            func.coalesce(func.sum(files.c.size_bytes), 0).label("total_bytes"),
            func.coalesce(func.sum(files.c.events), 0).label("total_events"),
        )
        .group_by(files.c.dataset_id)
    )


def not_found(name: str) -> NotFound:
    return NotFound(f"dataset {name} not found", resource_type="dataset", resource_name=f"datasets/{name}")


def _record(row: Row[Any], counts: Any) -> DatasetRecord:
    """A dataset row with its totals (`counts`: a row of _counts_query, or None: no files)."""
    values = {name: value for name, value in row._mapping.items() if name not in REQUEST_KEY_COLUMNS}
    return DatasetRecord(
        **values, file_count=counts.file_count if counts else 0,
        total_bytes=int(counts.total_bytes) if counts else 0, total_events=int(counts.total_events) if counts else 0)


class DatasetStore(Store):
    def register(self, name: str, owner: str, scope: str, specs: list[FileSpec], request_id: str = "", *,
                 caller: str = "", digest: str = "") -> DatasetRecord:
        """An input dataset (in `scope`) with its files, all or nothing. A request_id is the
        caller's: the same caller repeating it with the same request (`digest`) gets the dataset
        the first call registered, with another request ALREADY_EXISTS."""
        at = now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = earlier_request(conn, datasets, datasets.c.name, request_id, caller, owner,
                                          locked=not self._sqlite)
                if earlier is not None:
                    check_replay(earlier[1], digest, request_id)
                    return self._get(conn, earlier[0])
            if conn.execute(select(datasets.c.dataset_id).where(datasets.c.name == name)).first():
                raise AlreadyExists(f"dataset {name} already exists")
            dataset_id = conn.execute(
                insert(datasets).returning(datasets.c.dataset_id),
                {"name": name, "kind": "input", "owner": owner, "scope": scope, "task_id": 0,
                 "request_id": request_id or None, "request_caller": caller if request_id else None,
                 "request_digest": digest if request_id else None, "create_time": at, "update_time": at},
            ).scalar_one()
            bulk.insert_rows(conn, files, [
                {"dataset_id": dataset_id, "scope": f.scope, "lfn": f.lfn, "size_bytes": f.size_bytes,
                 "adler32": f.adler32, "events": f.events, "storage_elements": f.storage_elements, "job_id": 0,
                 "create_time": at}
                for f in specs
            ])
            return self._get(conn, name)

    def _get(self, conn: Connection, name: str) -> DatasetRecord:
        row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        if row is None:
            raise not_found(name)
        return _record(row, conn.execute(_counts_query().where(files.c.dataset_id == row.dataset_id)).first())

    def get(self, name: str) -> DatasetRecord:
        with self._engine.connect() as conn:
            return self._get(conn, name)

    def list_datasets(self, selected: Filter, *, limit: int,
                      before: int = 0) -> tuple[list[DatasetRecord], int]:
        where = filter_condition(selected, lambda c: compare(_FILTER_COLUMNS[c.field], c))
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(datasets).where(where)).scalar_one()
            query = select(datasets).where(where).order_by(datasets.c.dataset_id.desc()).limit(limit)
            if before:
                query = query.where(datasets.c.dataset_id < before)
            rows = conn.execute(query).all()
            counts = self._file_counts(conn, [r.dataset_id for r in rows])
        return [_record(r, counts.get(r.dataset_id)) for r in rows], total

    def list_datasets_sorted(self, selected: Filter, *, ordering: Ordering, limit: int,
                             after: Sequence[Any] | None = None) -> tuple[list[DatasetRecord], int]:
        """The datasets `selected` holds, sorted by `ordering`, from the one after the position
        `after` (its sort-key values, the name last); and the total matching."""
        where = filter_condition(selected, lambda c: compare(_FILTER_COLUMNS[c.field], c))
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(datasets).where(where)).scalar_one()
            query = select(datasets).where(where).order_by(*order_clauses(ordering, _FILTER_COLUMNS)).limit(limit)
            if after is not None:
                query = query.where(after_position(ordering, _FILTER_COLUMNS, after))
            rows = conn.execute(query).all()
            counts = self._file_counts(conn, [r.dataset_id for r in rows])
        return [_record(r, counts.get(r.dataset_id)) for r in rows], total

    @staticmethod
    def _file_counts(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
        if not ids:
            return {}
        return {c.dataset_id: c for c in conn.execute(_counts_query().where(files.c.dataset_id.in_(ids)))}

    def list_files(
        self, name: str, *, task_id: int = 0, limit: int, after: int = 0
    ) -> tuple[list[DatasetFileView], int]:
        """Files in registration order (keyset on file id); with task_id, each with its state there."""
        with self._engine.connect() as conn:
            dataset = conn.execute(select(datasets).where(datasets.c.name == name)).first()
            if dataset is None:
                raise not_found(name)
            total = conn.execute(
                select(func.count()).select_from(files).where(files.c.dataset_id == dataset.dataset_id)
            ).scalar_one()
            query = (select(*FILE_COLUMNS).where(files.c.dataset_id == dataset.dataset_id, files.c.file_id > after)
                     .order_by(files.c.file_id).limit(limit))
            found = [file_of(r) for r in conn.execute(query)]
            if task_id:
                return self._with_task_states(conn, found, task_id, name), total
        return [DatasetFileView(f) for f in found], total

    @staticmethod
    def _with_task_states(conn: Connection, found: Sequence[DatasetFile], task_id: int,
                          name: str) -> list[DatasetFileView]:
        file_ids = [f.file_id for f in found]
        chunks: dict[int, list[TaskChunk]] = {}
        if file_ids:
            query = (select(*CHUNK_COLUMNS).where(contents.c.task_id == task_id, contents.c.file_id.in_(file_ids))
                     .order_by(contents.c.content_id))
            for row in conn.execute(query):
                chunk = chunk_of(row)
                chunks.setdefault(chunk.file_id, []).append(chunk)
        if found and not chunks:
            used = conn.execute(select(contents.c.content_id).where(contents.c.task_id == task_id).limit(1)).first()
            if used is None:
                raise InvalidArgument(f"task {task_id} has no inputs from dataset {name} (yet)", field="task_id")
        job_rows = {c.job_row for cs in chunks.values() for c in cs if c.job_row}
        job_ids: dict[int, int] = {}
        if job_rows:
            job_ids = {r.row_id: r.job_id or 0
                       for r in conn.execute(select(jobs.c.row_id, jobs.c.job_id).where(jobs.c.row_id.in_(job_rows)))}
        return [DatasetFileView(f, file_task_state(task_id, chunks[f.file_id], job_ids) if f.file_id in chunks
                                else None) for f in found]
