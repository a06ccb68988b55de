"""Submitting jobs: a batch is stored whole, activated, or not at all."""

from __future__ import annotations

from operator import attrgetter

from sqlalchemy import Connection, insert, select

from panda_runtime.service.bulk import insert_rows, new_ids
from panda_runtime.service.db import Store
from panda_runtime.service.db import now as utc_now
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.jobs import JobFile, JobRecord
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
_FILE_COLUMNS = ("job_id", "lfn", "kind", "status", "size_bytes", "adler32", "storage_element", "attempt")


class SubmissionStore(Store):
    def submit(self, specs: list[JobSpec], *, owner: str, vo: str = "", request_id: str = "") -> list[JobRecord]:
        """Store every job activated, or none. A repeated request_id returns the first call's jobs."""
        now = utc_now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = conn.execute(
                    select(jobs.c.job_id).where(jobs.c.request_id == request_id).order_by(jobs.c.job_id)
                ).scalars().all()
                if earlier:
                    return read_records(conn, list(earlier))
            queue_elements = self._check_queues(conn, specs)
            elements = read_elements(conn, [*queue_elements.values(), *(f.storage_element for s in specs
                                                                         for f in s.files)])
            check_file_storage(specs, queue_elements, elements, vo)
            urls = {element_id: element.url for element_id, element in elements.items()}
            records = [new_job(spec, owner=owner, vo=vo, request_id=request_id, now=now) for spec in specs]
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

    @staticmethod
    def _check_queues(conn: Connection, specs: list[JobSpec]) -> dict[str, str]:
        """Queue id -> its storage element's id, for every queue the specs name, once they passed
        the queues' limits (`check_queue_limits`)."""
        names = {s.queue for s in specs}
        found = {r.queue_id: queue_from_row(r._mapping) for r in conn.execute(select(queues).where(
            queues.c.queue_id.in_(names)))}
        check_queue_limits(specs, found)
        return {name: queue.storage_element for name, queue in found.items()}
