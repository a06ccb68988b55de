"""Submitting jobs: a batch is stored whole, activated, or not at all."""

from __future__ import annotations

from collections.abc import Mapping
from operator import attrgetter

from sqlalchemy import Connection, and_, func, insert, or_, select, text

from panda_runtime.service.bulk import insert_rows, new_ids
from panda_runtime.service.db import Store
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.idempotency import check_replay, lock_key
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.jobs import JobFile, JobRecord
from server_svc.domain.outputs import NAME_FREEING_STATES, OutputName, check_names_free, output_names
from server_svc.domain.queues import check_queue_limits
from server_svc.domain.storage import check_file_storage
from server_svc.domain.submission import new_files, new_job, submitted_event
from server_svc.store.events import append_events
from server_svc.store.job_rows import read_records
from server_svc.store.queue_store import queue_from_row
from server_svc.store.storage_store import read_elements
from server_svc.store.tables import job_files, jobs, queues

__all__ = ["SubmissionStore"]

# Every column of a new job but its id, as SubmitJobs writes them (it has no times yet of a start,
# an end or a heartbeat).
_NEW_COLUMNS = tuple(str(column.name) for column in jobs.columns if column.name not in (
    "job_id", "start_time", "end_time", "heartbeat_time"))
_new_values = attrgetter(*_NEW_COLUMNS)
# Output names of one scope are given out one submission at a time (PostgreSQL: a transaction
# lock on the scope's hash, in a class of advisory locks of its own).
_LOCK_SCOPE = text("SELECT pg_advisory_xact_lock(1935896432, hashtext(:scope))")
_NAMES_PER_QUERY = 5000
_FILE_COLUMNS = ("job_id", "scope", "lfn", "kind", "status", "size_bytes", "adler32", "storage_element", "attempt")


class SubmissionStore(Store):
    def submit(self, specs: list[JobSpec], *, owner: str, vo: str = "", request_id: str = "", caller: str = "",
               digest: str = "") -> list[JobRecord]:
        """Store every job activated, or none. A request_id is the caller's: the same caller
        repeating it with the same request (`digest`) gets the first call's jobs, with another
        request ALREADY_EXISTS."""
        now = utc_now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = self._earlier(conn, request_id, caller, owner)
                if earlier:
                    check_replay(earlier[0][1], digest, request_id)
                    return read_records(conn, [job_id for job_id, _ in earlier])
            queue_elements = self._check_queues(conn, specs)
            elements = read_elements(conn, [*queue_elements.values(), *(f.storage_element for s in specs
                                                                         for f in s.files)])
            check_file_storage(specs, queue_elements, elements, vo)
            names = output_names(specs)
            check_names_free(names, self._taken(conn, names))
            urls = {element_id: element.url for element_id, element in elements.items()}
            records = [new_job(spec, owner=owner, vo=vo, request_id=request_id, request_caller=caller,
                               request_digest=digest, now=now) for spec in specs]
            if self._sqlite:
                rows = [dict(zip(_NEW_COLUMNS, _new_values(record), strict=True)) for record in records]
                job_ids = list(
                    conn.execute(
                        insert(jobs).returning(jobs.c.job_id, sort_by_parameter_order=True), rows
                    ).scalars()
                )
            else:
                # One statement for the whole batch: a multi-row VALUES of thousands of rows costs
                # more to build and parse than to run.
                job_ids = new_ids(conn, jobs, "job_id", len(records))
                for job_id, record in zip(job_ids, records, strict=True):
                    record.job_id = job_id
                insert_rows(conn, jobs, records, ("job_id", *_NEW_COLUMNS))
            files: list[JobFile] = []
            for job_id, record, spec in zip(job_ids, records, specs, strict=True):
                record.job_id = job_id
                record.files = new_files(job_id, spec, queue_elements[spec.queue], urls)
                files += record.files
            insert_rows(conn, job_files, files, _FILE_COLUMNS)
            append_events(conn, [submitted_event(record) for record in records])
        # What was just written, without reading it back.
        return records

    def _earlier(self, conn: Connection, request_id: str, caller: str, owner: str) -> list[tuple[int, str | None]]:
        """(job id, request digest) of the jobs the caller's earlier call with this key made,
        oldest first. Calls with one key wait for each other (SQLite's single writer does it
        there), so two of them never both create. Keys stored before callers were recorded
        count for the jobs' owner."""
        if not self._sqlite:
            conn.execute(select(func.pg_advisory_xact_lock(lock_key(caller, request_id))))
        mine = or_(jobs.c.request_caller == caller, and_(jobs.c.request_caller.is_(None), jobs.c.owner == owner))
        rows = conn.execute(select(jobs.c.job_id, jobs.c.request_digest).where(jobs.c.request_id == request_id, mine)
                            .order_by(jobs.c.job_id))
        return [(r.job_id, r.request_digest) for r in rows]

    def _taken(self, conn: Connection, names: Mapping[OutputName, str]) -> list[tuple[OutputName, int]]:
        """Those of `names` already registered, or declared by a job that may still produce them
        (one that has not ended failed, cancelled or closed), each with such a job. On
        PostgreSQL the scopes are locked first, until the transaction ends, so that two
        submissions cannot both find a name free (SQLite has one writer at a time)."""
        by_scope: dict[str, list[str]] = {}
        for scope, lfn in names:
            by_scope.setdefault(scope, []).append(lfn)
        if not self._sqlite:
            for scope in sorted(by_scope):
                conn.execute(_LOCK_SCOPE, {"scope": scope})
        taken: list[tuple[OutputName, int]] = []
        for scope, lfns in by_scope.items():
            for start in range(0, len(lfns), _NAMES_PER_QUERY):
                query = (
                    select(job_files.c.scope, job_files.c.lfn, job_files.c.job_id)
                    .join(jobs, jobs.c.job_id == job_files.c.job_id)
                    .where(job_files.c.scope == scope, job_files.c.lfn.in_(lfns[start:start + _NAMES_PER_QUERY]),
                           job_files.c.kind != "input")
                    .where(or_(job_files.c.status == "ready",
                               jobs.c.state.not_in([s.value for s in NAME_FREEING_STATES])))
                )
                taken += [((row.scope, row.lfn), row.job_id) for row in conn.execute(query)]
        return taken

    @staticmethod
    def _check_queues(conn: Connection, specs: list[JobSpec]) -> dict[str, str]:
        """Queue id -> its storage element's id, for every queue the specs name, once they passed
        the queues' limits (`check_queue_limits`)."""
        names = {s.queue for s in specs}
        found = {r.queue_id: queue_from_row(r._mapping) for r in conn.execute(select(queues).where(
            queues.c.queue_id.in_(names)))}
        check_queue_limits(specs, found)
        return {name: queue.storage_element for name, queue in found.items()}
