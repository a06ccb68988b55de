"""Migration 0008 on SQLite and PostgreSQL: the URLs queues held become configured storage
elements, queues and job files name them, a URL a job chose itself names none; every file gets
its owner's scope; and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command

from panda_runtime.service.db import _alembic_config, make_engine

AT = datetime(2026, 12, 1, tzinfo=UTC)

_queues = sa.table("queues", *(sa.column(c) for c in (
    "queue_id", "status", "max_cores", "max_memory_mb", "max_walltime_seconds", "max_disk_mb", "storage_element",
    "description", "create_time", "update_time")))
_jobs = sa.table("jobs", *(sa.column(c) for c in (
    "job_id", "state", "queue", "owner", "vo", "task_id", "priority", "attempt", "max_attempts", "command",
    "environment", "cores", "memory_mb", "walltime_seconds", "disk_mb", "label", "error_code", "error_diag",
    "exit_code", "log_tail", "pilot_id", "node", "max_rss_mb", "cpu_seconds", "kill_requested", "create_time",
    "update_time", "state_time")))
_files = sa.table("job_files", *(sa.column(c) for c in (
    "file_id", "job_id", "lfn", "kind", "status", "size_bytes", "adler32", "storage_element", "attempt")))
_datasets = sa.table("jedi_datasets", *(sa.column(c) for c in (
    "dataset_id", "name", "kind", "owner", "task_id", "create_time", "update_time")))
_dataset_files = sa.table("jedi_files", *(sa.column(c) for c in (
    "file_id", "dataset_id", "lfn", "size_bytes", "adler32", "events", "storage_elements", "job_id", "create_time")))


def _queue(queue_id: str, url: str) -> dict[str, Any]:
    return {"queue_id": queue_id, "status": "online", "max_cores": 0, "max_memory_mb": 0, "max_walltime_seconds": 0,
            "max_disk_mb": 0, "storage_element": url, "description": "", "create_time": AT, "update_time": AT}


def _job(job_id: int, queue: str) -> dict[str, Any]:
    return {"job_id": job_id, "state": "finished", "queue": queue, "owner": "alice", "vo": "panda", "task_id": 0,
            "priority": 0, "attempt": 1, "max_attempts": 1, "command": '["true"]', "environment": "{}", "cores": 1,
            "memory_mb": 1, "walltime_seconds": 0, "disk_mb": 0, "label": "", "error_code": 0, "error_diag": "",
            "exit_code": 0, "log_tail": "", "pilot_id": "", "node": "", "max_rss_mb": 0, "cpu_seconds": 0.0,
            "kill_requested": False, "create_time": AT, "update_time": AT, "state_time": AT}


def _file(file_id: int, job_id: int, url: str) -> dict[str, Any]:
    return {"file_id": file_id, "job_id": job_id, "lfn": f"f{file_id}", "kind": "output", "status": "ready",
            "size_bytes": 1, "adler32": "00020002", "storage_element": url, "attempt": 1}


def as_list(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def test_queue_urls_become_storage_elements(database_url: str) -> None:
    config = _alembic_config(database_url)
    command.downgrade(config, "0007")
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(_queues), [_queue("local", "file:///se/local"), _queue("local-b", "file:///se/b"),
                                              _queue("also-b", "file:///se/b"), _queue("bare", "")])
            conn.execute(sa.insert(_jobs), [_job(1, "local"), _job(2, "also-b")])
            conn.execute(sa.insert(_files), [_file(1, 1, "file:///se/local"), _file(2, 2, "file:///se/b"),
                                             _file(3, 1, "file:///etc"), _file(4, 2, "")])
            conn.execute(sa.insert(_datasets), [{"dataset_id": 1, "name": "bobs", "kind": "input", "owner": "bob",
                                                 "task_id": 0, "create_time": AT, "update_time": AT}])
            conn.execute(sa.insert(_dataset_files), [{"file_id": 1, "dataset_id": 1, "lfn": "b.dat", "size_bytes": 1,
                                                      "adler32": "00620062", "events": 0, "job_id": 0,
                                                      "storage_elements": '["file:///se/b"]', "create_time": AT}])
        command.upgrade(config, "head")
        with engine.connect() as conn:
            elements = {r.storage_element_id: (r.url, r.queues, r.vos) for r in conn.execute(
                sa.text("SELECT storage_element_id, url, queues, vos FROM storage_elements"))}
            queues = dict(conn.execute(sa.text("SELECT queue_id, storage_element FROM queues")).all())
            files = dict(conn.execute(sa.text("SELECT file_id, storage_element FROM job_files")).all())

        assert {k: (u, as_list(q), as_list(v)) for k, (u, q, v) in elements.items()} == {
            "local": ("file:///se/local", [], []), "also-b": ("file:///se/b", [], [])}
        assert queues == {"local": "local", "local-b": "also-b", "also-b": "also-b", "bare": ""}
        # The URL a job chose itself (file:///etc) is no storage element's.
        assert files == {1: "local", 2: "also-b", 3: "", 4: ""}
        with engine.connect() as conn:
            scopes = set(conn.execute(sa.text("SELECT scope FROM job_files")).scalars())
            dataset_scopes = conn.execute(sa.text(
                "SELECT d.scope, f.scope FROM jedi_datasets d JOIN jedi_files f ON f.dataset_id = d.dataset_id")).all()
        assert scopes == {"user.alice"} and [tuple(r) for r in dataset_scopes] == [("user.bob", "user.bob")]
        with engine.connect() as conn:
            (replicas,) = conn.execute(sa.text("SELECT storage_elements FROM jedi_files")).scalars()
        assert as_list(replicas) == ["also-b"]

        command.downgrade(config, "0007")
        with engine.connect() as conn:
            queues = dict(conn.execute(sa.text("SELECT queue_id, storage_element FROM queues")).all())
            files = dict(conn.execute(sa.text("SELECT file_id, storage_element FROM job_files")).all())
        assert queues == {"local": "file:///se/local", "local-b": "file:///se/b", "also-b": "file:///se/b", "bare": ""}
        assert files == {1: "file:///se/local", 2: "file:///se/b", 3: "", 4: ""}
        with engine.connect() as conn:
            (replicas,) = conn.execute(sa.text("SELECT storage_elements FROM jedi_files")).scalars()
        assert as_list(replicas) == ["file:///se/b"]
        command.upgrade(config, "head")
    finally:
        engine.dispose()
