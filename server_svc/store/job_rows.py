"""Jobs' rows into typed records and back: reading jobs by id (locked for a change), their
files, and writing what the rules changed. Shared by the job repositories."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields
from functools import cache
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Connection, TextClause, bindparam, func, select, text, update

from panda_runtime.service.bulk import Statement, run_statements, update_statement
from server_svc.domain.jobs import Job, JobChanges, JobFile, JobRecord, OutputFile
from server_svc.domain.states import JobState
from server_svc.store.events import event_statements
from server_svc.store.tables import job_files, jobs, storage_elements

__all__ = ["MUTABLE", "STATE_COLUMNS", "change_statements", "file_from_row", "job_from_row", "read_files",
           "read_jobs", "read_records", "record_from_row", "write_changes"]

# Columns a state change may touch; every batched UPDATE writes exactly these.
MUTABLE = (
    "state", "attempt", "queue", "state_time", "update_time", "heartbeat_time", "start_time", "end_time",
    "exit_code", "error_code", "error_diag", "log_tail", "max_rss_mb", "cpu_seconds", "pilot_id", "node",
    "kill_requested",
)
# What a state change reads: the fields of `Job` (the mutable columns, and what deciding the
# change needs: owner and VO for scope checks, max attempts for retries, task and queue for the
# event).
STATE_COLUMNS = tuple(jobs.c[f.name] for f in fields(Job))
_STATES = {state.value: state for state in JobState}
# Positional construction from a row's values, read in C: a fraction of the cost of keywords.
_job_values = itemgetter(*(f.name for f in fields(Job)))
_record_values = itemgetter(*(f.name for f in fields(JobRecord) if f.name not in ("files", "history")))


def job_from_row(row: Mapping[str, Any]) -> Job:
    """A row of the state columns as a Job."""
    job = Job(*_job_values(row))
    job.state = _STATES[job.state]
    return job


def record_from_row(row: Mapping[str, Any], files: list[JobFile]) -> JobRecord:
    """A full row (every column) as a JobRecord with its files."""
    record = JobRecord(*(*_record_values(row), files))
    record.state = _STATES[record.state]
    return record


def file_from_row(row: Mapping[Any, Any]) -> JobFile:
    return JobFile(**row)


@cache
def _pg_rows_statement(full: bool, lock: bool) -> TextClause:
    """Jobs by id on PostgreSQL: one statement text whatever the number of ids (so it is planned
    once), sent with the transaction's BEGIN in one round trip (see `run_statements`)."""
    columns = "*" if full else ", ".join(str(column.name) for column in STATE_COLUMNS)
    return text(
        f"SELECT {columns} FROM jobs WHERE job_id = ANY(CAST(:ids AS bigint[])) ORDER BY job_id"
        + (" FOR UPDATE" if lock else "")
    )


def _rows(conn: Connection, job_ids: Iterable[int], *, lock: bool, full: bool) -> list[dict[str, Any]]:
    ids = sorted(set(job_ids))
    if not ids:
        return []
    if conn.dialect.name == "postgresql":
        (rows,) = run_statements(conn, [(_pg_rows_statement(full, lock), {"ids": ids})])
        return rows
    # SQLite's BEGIN IMMEDIATE already holds the only write lock.
    query = (select(jobs) if full else select(*STATE_COLUMNS)).where(jobs.c.job_id.in_(ids))
    return [dict(r._mapping) for r in conn.execute(query.order_by(jobs.c.job_id))]


def read_jobs(conn: Connection, job_ids: Iterable[int], *, lock: bool) -> dict[int, Job]:
    """The jobs by id (those that exist), locked for the transaction if `lock`."""
    return {job.job_id: job for job in map(job_from_row, _rows(conn, job_ids, lock=lock, full=False))}


# A file with its storage element's URL, the one place its pilot may stage it through.
_FILES_WITH_URLS = (
    select(job_files, func.coalesce(storage_elements.c.url, "").label("storage_url"))
    .select_from(job_files.outerjoin(
        storage_elements, storage_elements.c.storage_element_id == job_files.c.storage_element))
)


# Built once: building a statement and its cache key cost more than running it on every read.
_FILES_OF_JOBS = _FILES_WITH_URLS.where(job_files.c.job_id.in_(bindparam("job_ids", expanding=True))).order_by(
    job_files.c.file_id)


def read_files(conn: Connection, job_ids: Sequence[int]) -> dict[int, list[JobFile]]:
    """The jobs' files, each with its storage element's URL."""
    files: dict[int, list[JobFile]] = {job_id: [] for job_id in job_ids}
    if job_ids:
        for row in conn.execute(_FILES_OF_JOBS, {"job_ids": list(job_ids)}):
            files[row.job_id].append(file_from_row(row._mapping))
    return files


def read_records(conn: Connection, job_ids: list[int]) -> list[JobRecord]:
    """The jobs in full, with their files, in the order of `job_ids` (which must exist)."""
    rows = {row["job_id"]: row for row in _rows(conn, job_ids, lock=False, full=True)}
    files = read_files(conn, job_ids)
    return [record_from_row(rows[job_id], files[job_id]) for job_id in job_ids]


# Output files registered by finished jobs (SQLite: an executemany of the same update).
_PG_OUTPUT_FILES = text(
    "UPDATE job_files SET status = 'ready', size_bytes = v.size_bytes, adler32 = v.adler32, attempt = v.attempt"
    " FROM json_to_recordset(CAST(:rows AS json))"
    " AS v(job_id bigint, lfn text, size_bytes bigint, adler32 text, attempt integer)"
    " WHERE job_files.job_id = v.job_id AND job_files.lfn = v.lfn AND job_files.kind <> 'input'"
    " AND job_files.job_id = ANY(CAST(:job_ids AS bigint[]))"  # found by index, whatever the statistics
)
_OUTPUT_FILES = (
    update(job_files)
    .where(job_files.c.job_id == bindparam("b_job_id"), job_files.c.lfn == bindparam("b_lfn"),
           job_files.c.kind != "input")
    .values(status="ready", size_bytes=bindparam("b_size_bytes"), adler32=bindparam("b_adler32"),
            attempt=bindparam("b_attempt"))
)
_OUTPUT_FIELDS = tuple(f.name for f in fields(OutputFile))


def _output_files_statement(conn: Connection, files: list[OutputFile]) -> Statement | None:
    if not files:
        return None
    if conn.dialect.name == "postgresql":
        return _PG_OUTPUT_FILES, {"rows": orjson.dumps(files).decode(), "job_ids": sorted({f.job_id for f in files})}
    return _OUTPUT_FILES, [{f"b_{name}": getattr(f, name) for name in _OUTPUT_FIELDS} for f in files]


def change_statements(conn: Connection, changes: JobChanges) -> list[Statement | None]:
    """What writes the changed jobs, their events and the output files they registered."""
    return [update_statement(conn, jobs, "job_id", list(changes.jobs.values()), MUTABLE),
            *event_statements(conn, changes.events), _output_files_statement(conn, changes.outputs)]


def write_changes(conn: Connection, changes: JobChanges) -> None:
    run_statements(conn, change_statements(conn, changes))
