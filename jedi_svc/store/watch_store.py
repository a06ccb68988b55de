"""The watcher's steps: the server's job events applied to JEDI's jobs, and what ended jobs do
to their chunks, their task's counters and its output dataset (domain.outcomes decides),
with the stream's cursor stored in the same transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from jedi_svc.domain import outcomes
from jedi_svc.domain.chunks import TaskChunk
from jedi_svc.domain.jobs import JOB_FINAL_STATES, SUBMITTING, JobDetails, JobEvent, OutputFile, TaskJob
from jedi_svc.domain.tasks import Task
from jedi_svc.store.records import CHUNK_COLUMNS, JOB_COLUMNS, chunk_of, job_of
from jedi_svc.store.steps import TaskSteps, in_parts
from jedi_svc.store.tables import contents, datasets, files, jobs, tasks, watch_cursors
from panda_runtime.service import bulk
from panda_runtime.service.db import now

__all__ = ["WatchStore"]

# What an event changes on a job.
_JOB_CHANGES = ("row_id", "state", "last_cursor", "error_code", "error_diag", "max_rss_mb", "walltime_used",
                "cpu_seconds", "end_time")


class WatchStore(TaskSteps):
    def watch_cursor(self) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(select(watch_cursors.c.cursor).where(watch_cursors.c.name == "server")).scalar()
            return int(value or 0)

    def has_jobs(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(jobs.c.row_id).limit(1)).first() is not None

    def unmapped(self, events: list[JobEvent]) -> list[int]:
        """Tasks with batches still submitting whose jobs end in `events` under ids JEDI has not
        recorded yet (a submit call whose answer was lost). Other states of such jobs need no
        waiting: the job's end will come and is what counts."""
        events = [e for e in events if e.state in JOB_FINAL_STATES]
        by_task = {e.task_id for e in events if e.task_id}
        if not by_task:
            return []
        with self._engine.connect() as conn:
            pending = {r.task_id for r in conn.execute(
                select(jobs.c.task_id).where(jobs.c.task_id.in_(list(by_task)), jobs.c.state == SUBMITTING)
                .distinct())}
            if not pending:
                return []
            ids = sorted({e.job_id for e in events if e.task_id in pending})
            known: set[int] = set()
            for part in in_parts(ids):
                known.update(conn.execute(select(jobs.c.job_id).where(jobs.c.job_id.in_(part))).scalars())
        return sorted({e.task_id for e in events if e.task_id in pending and e.job_id not in known})

    def finished_jobs_needing_details(self, events: list[JobEvent]) -> dict[int, list[int]]:
        """Task id -> server job ids that these events finish and JEDI has not yet seen finish."""
        ids = sorted({e.job_id for e in events if e.state == "finished" and e.task_id})
        wanted: dict[int, list[int]] = {}
        with self._engine.connect() as conn:
            for part in in_parts(ids):
                for r in conn.execute(select(jobs.c.task_id, jobs.c.job_id, jobs.c.state)
                                      .where(jobs.c.job_id.in_(part))):
                    if r.state not in JOB_FINAL_STATES:
                        wanted.setdefault(r.task_id, []).append(r.job_id)
        return wanted

    def apply_job_events(self, events: list[JobEvent], details: Mapping[int, JobDetails],
                         cursor: int | None) -> set[int]:
        """Apply a batch of server events: job states, then for ended jobs their chunks (done,
        to retry, failed for good), outputs and measurements; and store the stream's cursor,
        all in one transaction. An event older than the last one applied to its job is
        ignored, so replaying the stream after a crash changes nothing. Returns the tasks touched.
        A cursor of None is not stored (events applied one task at a time)."""
        at = now()
        touched: set[int] = set()
        with self._engine.begin() as conn:
            ids = sorted({e.job_id for e in events if e.task_id})
            by_job_id: dict[int, TaskJob] = {}
            for part in in_parts(ids):
                for r in conn.execute(select(*JOB_COLUMNS).where(jobs.c.job_id.in_(part))):
                    by_job_id[r.job_id] = job_of(r)
            task_rows: dict[int, Task] = {}
            for task_id in sorted({j.task_id for j in by_job_id.values()}):
                task = self._lock_task(conn, task_id)
                if task is not None:
                    task_rows[task_id] = task
            changed: dict[int, TaskJob] = {}
            ended: list[TaskJob] = []
            for event in events:
                job = by_job_id.get(event.job_id)
                if job is None or job.task_id not in task_rows:
                    continue
                if outcomes.apply_event(job, event, details.get(event.job_id), at):
                    if job.state in JOB_FINAL_STATES:
                        ended.append(job)
                    changed[job.row_id] = job
                    touched.add(job.task_id)
            if changed:
                bulk.update_rows(conn, jobs, "row_id", [
                    {name: getattr(job, name) for name in _JOB_CHANGES} for job in changed.values()])
            if ended:
                self._apply_outcomes(conn, ended, task_rows, details, at)
            if cursor is not None:
                self._store_cursor(conn, cursor, at)
        return touched

    def _apply_outcomes(self, conn: Connection, ended: list[TaskJob], task_rows: Mapping[int, Task],
                        details: Mapping[int, JobDetails], at: datetime) -> None:
        content_ids = sorted({c for job in ended for c in job.content_ids})
        chunks: dict[int, TaskChunk] = {}
        for part in in_parts(content_ids):
            for r in conn.execute(select(*CHUNK_COLUMNS).where(contents.c.content_id.in_(part))):
                chunks[r.content_id] = chunk_of(r)
        chunk_updates: list[dict[str, object]] = []
        outputs: list[tuple[TaskJob, OutputFile]] = []
        counters: dict[int, list[int]] = {}
        for job in ended:
            task_state = task_rows[job.task_id].state
            finished, failed = outcomes.counts_as(job.state, task_state)
            count = counters.setdefault(job.task_id, [0, 0])
            count[0] += finished
            count[1] += failed
            chunk_updates += [
                {"content_id": o.content_id, "status": o.status, "error_code": o.error_code,
                 "error_diag": o.error_diag}
                for o in outcomes.chunk_outcomes(job, task_state, chunks)]
            if job.state == "finished":
                detail = details.get(job.job_id or 0)
                outputs += [(job, out) for out in (detail.outputs if detail else [])]
        bulk.update_rows(conn, contents, "content_id", chunk_updates)
        for task_id, (ok, bad) in counters.items():
            conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(
                jobs_finished=tasks.c.jobs_finished + ok, jobs_failed=tasks.c.jobs_failed + bad, update_time=at))
        if outputs:
            self._register_outputs(conn, outputs, task_rows, at)

    @staticmethod
    def _register_outputs(conn: Connection, outputs: list[tuple[TaskJob, OutputFile]], task_rows: Mapping[int, Task],
                          at: datetime) -> None:
        """Finished jobs' outputs in their task's output dataset (once: a replayed event finds
        them there)."""
        by_dataset: dict[int, list[tuple[TaskJob, OutputFile]]] = {}
        for job, out in outputs:
            dataset_id = task_rows[job.task_id].output_dataset_id
            if dataset_id:
                by_dataset.setdefault(dataset_id, []).append((job, out))
        for dataset_id, items in by_dataset.items():
            lfns = [out.lfn for _, out in items]
            existing: set[str] = set()
            for part in in_parts(lfns):
                existing.update(conn.execute(select(files.c.lfn).where(
                    files.c.dataset_id == dataset_id, files.c.lfn.in_(part))).scalars())
            new = [(job, out) for job, out in items if out.lfn not in existing]
            if new:
                bulk.insert_rows(conn, files, [
                    {"dataset_id": dataset_id, "scope": out.scope, "lfn": out.lfn, "size_bytes": out.size_bytes,
                     "adler32": out.adler32,
                     "events": 0, "storage_elements": [out.storage_element] if out.storage_element else [],
                     "job_id": job.job_id, "create_time": at}
                    for job, out in new
                ])
                conn.execute(update(datasets).where(datasets.c.dataset_id == dataset_id).values(update_time=at))

    @staticmethod
    def _store_cursor(conn: Connection, cursor: int, at: datetime) -> None:
        done = conn.execute(update(watch_cursors).where(watch_cursors.c.name == "server")
                            .values(cursor=cursor, update_time=at)).rowcount
        if not done:
            conn.execute(insert(watch_cursors).values(name="server", cursor=cursor, update_time=at))

    def store_cursor(self, cursor: int) -> None:
        with self._engine.begin() as conn:
            self._store_cursor(conn, cursor, now())
