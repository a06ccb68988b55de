"""Datasets and their files: registration, look-ups, and files with their state in a task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, select

from jedi_svc.domain import progress
from jedi_svc.store.common import condition
from jedi_svc.store.tables import contents, datasets, files, jobs
from panda_runtime.service import bulk
from panda_runtime.service.db import Store, now
from panda_runtime.service.errors import AlreadyExists, InvalidArgument, NotFound
from panda_runtime.service.filtering import Comparison


@dataclass
class FileSpec:
    lfn: str
    size_bytes: int
    adler32: str
    events: int
    storage_elements: list[str]


_FILTER_COLUMNS = {
    "dataset_id": datasets.c.name, "kind": datasets.c.kind, "owner": datasets.c.owner,
    "task_id": datasets.c.task_id, "create_time": datasets.c.create_time,
}


def _counts_query() -> Any:
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


class DatasetStore(Store):
    def register(self, name: str, owner: str, specs: list[FileSpec], request_id: str = "") -> dict[str, Any]:
        """An input dataset with its files, all or nothing. A repeated request_id returns the first."""
        at = now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = conn.execute(select(datasets.c.name).where(datasets.c.request_id == request_id)).scalar()
                if earlier is not None:
                    return self._get(conn, earlier)
            if conn.execute(select(datasets.c.dataset_id).where(datasets.c.name == name)).first():
                raise AlreadyExists(f"dataset {name} already exists")
            dataset_id = conn.execute(
                insert(datasets).returning(datasets.c.dataset_id),
                {"name": name, "kind": "input", "owner": owner, "task_id": 0, "request_id": request_id or None,
                 "create_time": at, "update_time": at},
            ).scalar_one()
            bulk.insert_rows(conn, files, [
                {"dataset_id": dataset_id, "lfn": f.lfn, "size_bytes": f.size_bytes, "adler32": f.adler32,
                 "events": f.events, "storage_elements": f.storage_elements, "job_id": 0, "create_time": at}
                for f in specs
            ])
            return self._get(conn, name)

    def _get(self, conn: Any, name: str) -> dict[str, Any]:
        row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        if row is None:
            raise not_found(name)
        result = dict(row._mapping)
        counts = conn.execute(_counts_query().where(files.c.dataset_id == row.dataset_id)).first()
        result.update(file_count=counts.file_count if counts else 0,
                      total_bytes=int(counts.total_bytes) if counts else 0,
                      total_events=int(counts.total_events) if counts else 0)
        return result

    def get(self, name: str) -> dict[str, Any]:
        with self._engine.connect() as conn:
            return self._get(conn, name)

    def list(self, comparisons: list[Comparison], *, limit: int, before: int = 0) -> tuple[list[dict[str, Any]], int]:
        where = and_(True, *[condition(_FILTER_COLUMNS[c.field], c) for c in comparisons])
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(datasets).where(where)).scalar_one()
            query = select(datasets).where(where).order_by(datasets.c.dataset_id.desc()).limit(limit)
            if before:
                query = query.where(datasets.c.dataset_id < before)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            ids = [r["dataset_id"] for r in rows]
            counts = {}
            if ids:
                counts = {c.dataset_id: c for c in conn.execute(_counts_query().where(files.c.dataset_id.in_(ids)))}
        for row in rows:
            c = counts.get(row["dataset_id"])
            row.update(file_count=c.file_count if c else 0, total_bytes=int(c.total_bytes) if c else 0,
                       total_events=int(c.total_events) if c else 0)
        return rows, total

    def list_files(
        self, name: str, *, task_id: int = 0, limit: int, after: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """Files in registration order (keyset on file id); with task_id, each with its state there."""
        with self._engine.connect() as conn:
            dataset = conn.execute(select(datasets).where(datasets.c.name == name)).first()
            if dataset is None:
                raise not_found(name)
            total = conn.execute(
                select(func.count()).select_from(files).where(files.c.dataset_id == dataset.dataset_id)
            ).scalar_one()
            query = (select(files).where(files.c.dataset_id == dataset.dataset_id, files.c.file_id > after)
                     .order_by(files.c.file_id).limit(limit))
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if task_id:
                self._attach_task_states(conn, rows, task_id, name)
        return rows, total

    @staticmethod
    def _attach_task_states(conn: Any, rows: list[dict[str, Any]], task_id: int, name: str) -> None:
        file_ids = [r["file_id"] for r in rows]
        chunks: dict[int, list[dict[str, Any]]] = {}
        if file_ids:
            query = (select(contents).where(contents.c.task_id == task_id, contents.c.file_id.in_(file_ids))
                     .order_by(contents.c.content_id))
            for chunk in conn.execute(query):
                chunks.setdefault(chunk.file_id, []).append(dict(chunk._mapping))
        if rows and not chunks:
            used = conn.execute(select(contents.c.content_id).where(contents.c.task_id == task_id).limit(1)).first()
            if used is None:
                raise InvalidArgument(f"task {task_id} has no inputs from dataset {name} (yet)", field="task_id")
        job_rows = {c["job_row"] for cs in chunks.values() for c in cs if c["job_row"]}
        job_ids: dict[int, int] = {}
        if job_rows:
            job_ids = {r.row_id: r.job_id or 0
                       for r in conn.execute(select(jobs.c.row_id, jobs.c.job_id).where(jobs.c.row_id.in_(job_rows)))}
        for row in rows:
            mine = chunks.get(row["file_id"], [])
            if not mine:
                row["task_state"] = None
                continue
            latest = max(mine, key=lambda c: (c["attempts"], c["content_id"]))
            failed = [c for c in mine if c["error_code"] or c["error_diag"]]
            error = failed[-1] if failed else latest
            row["task_state"] = {
                "task_id": task_id,
                "status": progress.file_status(c["status"] for c in mine),
                "attempts": max(c["attempts"] for c in mine),
                "max_attempts": max(c["max_attempts"] for c in mine),
                "job_id": job_ids.get(latest["job_row"], 0),
                "error_code": error["error_code"],
                "error_diag": error["error_diag"],
                "chunks": len(mine),
            }
