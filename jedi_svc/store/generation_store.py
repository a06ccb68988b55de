"""The generator's steps: a task's jobs planned (domain.planning), made (domain.generation) and
stored in batches (state submitting) before they are sent; then each batch's server job ids
recorded. A batch is sent with a request id of its own, so a crash between sending and
recording cannot make a job twice."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, update

from jedi_svc.domain import brokerage, generation, planning
from jedi_svc.domain.datasets import DatasetFile
from jedi_svc.domain.jobs import ACTIVATED, JOB_FINAL_STATES, SUBMITTING, request_id
from jedi_svc.domain.progress import CANCELLED, READY, RUNNING
from jedi_svc.domain.tasks import Task
from jedi_svc.store.records import CHUNK_COLUMNS, FILE_COLUMNS, BatchJob, PlanResult, chunk_of, file_of
from jedi_svc.store.steps import TaskSteps, in_parts
from jedi_svc.store.tables import contents, files, jobs, tasks
from panda_runtime.service import bulk
from panda_runtime.service.db import now

__all__ = ["GenerationStore"]


class GenerationStore(TaskSteps):
    def has_ready_chunks(self, task_id: int) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(contents.c.content_id).where(
                contents.c.task_id == task_id, contents.c.status == READY).limit(1)).first() is not None

    def plan_jobs(
        self, task_id: int, queues: list[brokerage.QueueInfo], *, batch_size: int, pending_retry: float,
        jobs_per_point: int, max_jobs: int = 0, max_queued: int = 0,
    ) -> PlanResult:
        """Plan the task's next jobs (at most max_jobs; 0: all) and store them in batches of
        batch_size, or move the task as the plan says (pending, throttled). `queues` count
        the jobs given to them."""
        at = now()
        result = PlanResult()
        limits = planning.Limits(pending_retry, max_jobs, max_queued)
        with self._engine.begin() as conn:
            task = self._lock_task(conn, task_id)
            if task is None or not planning.may_plan(task.state, task.wait_until, at):
                return result
            ready = [chunk_of(r) for r in conn.execute(
                select(*CHUNK_COLUMNS).where(contents.c.task_id == task_id, contents.c.status == READY)
                .order_by(contents.c.content_id))]
            queued = 0
            if ready and max_queued:
                queued = conn.execute(select(func.count()).select_from(jobs).where(
                    jobs.c.task_id == task_id, jobs.c.state.in_([SUBMITTING, ACTIVATED]))).scalar_one()
            plan = planning.plan(task, ready, queued, queues, limits, at)
            result.pending_reason = plan.pending_reason
            if plan.change is not None:
                self._change(conn, task, plan.change, at)
            if plan.groups:
                self._generate(conn, task, plan, batch_size=batch_size, jobs_per_point=jobs_per_point, at=at,
                               pending_retry=pending_retry, result=result)
        return result

    def _generate(self, conn: Connection, task: Task, plan: planning.Plan, *, batch_size: int, jobs_per_point: int,
                  at: datetime, pending_retry: float, result: PlanResult) -> None:
        file_ids = sorted({c.file_id for g in plan.groups for c in g})
        found: dict[int, DatasetFile] = {}
        for part in in_parts(file_ids):
            for r in conn.execute(select(*FILE_COLUMNS).where(files.c.file_id.in_(part))):
                found[r.file_id] = file_of(r)
        owner_in_flight = conn.execute(
            select(func.count()).select_from(jobs.join(tasks, jobs.c.task_id == tasks.c.task_id))
            .where(tasks.c.owner == task.owner, jobs.c.state.not_in(list(JOB_FINAL_STATES)))
        ).scalar_one()
        made = generation.generate(task, plan.groups, found, plan.queues, owner_in_flight, scouting=plan.scouting,
                                   batch_size=batch_size, jobs_per_point=jobs_per_point, at=at,
                                   pending_retry_seconds=pending_retry)
        if not made.jobs:
            if made.abandons_ready_chunks:
                conn.execute(update(contents).where(contents.c.task_id == task.task_id, contents.c.status == READY)
                             .values(status=CANCELLED))
            else:
                result.pending_reason = made.change.reason or task.state_reason
            self._change(conn, task, made.change, at)
            return
        job_rows: list[dict[str, Any]] = [{
            "task_id": task.task_id, "serial": job.serial, "batch": job.batch, "job_id": None, "state": SUBMITTING,
            "scout": job.scout, "queue": job.queue, "priority": job.priority, "attempt": job.attempt,
            "content_ids": [c.content_id for c in job.chunks], "spec": job.spec, "output_lfn": job.output_lfn,
            "last_cursor": 0, "error_code": 0, "error_diag": "", "max_rss_mb": 0, "walltime_used": 0.0,
            "cpu_seconds": 0.0, "create_time": at,
        } for job in made.jobs]
        # A bulk insert is much faster than one INSERT ... RETURNING of thousands of rows; the
        # ids are read back by serial, which is unique in the task.
        bulk.insert_rows(conn, jobs, job_rows)
        by_serial = {r.serial: r.row_id for r in conn.execute(
            select(jobs.c.serial, jobs.c.row_id).where(
                jobs.c.task_id == task.task_id, jobs.c.serial >= made.jobs[0].serial,
                jobs.c.serial <= made.jobs[-1].serial))}
        bulk.update_rows(conn, contents, "content_id", [
            {"content_id": c.content_id, "status": RUNNING, "attempts": c.attempts + 1,
             "job_row": by_serial[job.serial]}
            for job in made.jobs for c in job.chunks
        ])
        for job in made.jobs:
            result.specs.setdefault(job.batch, (request_id(task.token, task.task_id, job.batch), []))[1].append(
                job.spec)
        self._change(conn, task, made.change, at)
        result.batches = made.batches
        result.jobs = len(made.jobs)

    # -- submitting batches --------------------------------------------------------------

    def submitting_batches(self, task_ids: Sequence[int] = ()) -> list[tuple[int, int]]:
        """(task id, batch) of every batch stored but not yet known to be at the server."""
        query = select(jobs.c.task_id, jobs.c.batch).where(jobs.c.state == SUBMITTING).distinct()
        if task_ids:
            query = query.where(jobs.c.task_id.in_(list(task_ids)))
        with self._engine.connect() as conn:
            return sorted((r.task_id, r.batch) for r in conn.execute(query))

    def owner_of(self, task_id: int) -> tuple[str, str]:
        """Owner and VO of a task: its jobs are submitted for them."""
        with self._engine.connect() as conn:
            row = conn.execute(select(tasks.c.owner, tasks.c.vo).where(tasks.c.task_id == task_id)).one()
        return row.owner, row.vo

    def batch(self, task_id: int, batch: int) -> tuple[str, list[BatchJob]]:
        """The request id and the jobs of a batch, in serial order."""
        with self._engine.connect() as conn:
            token = conn.execute(select(tasks.c.token).where(tasks.c.task_id == task_id)).scalar_one()
            rows = conn.execute(
                select(jobs.c.row_id, jobs.c.serial, jobs.c.state, jobs.c.spec)
                .where(jobs.c.task_id == task_id, jobs.c.batch == batch).order_by(jobs.c.serial)
            )
            return request_id(token, task_id, batch), [BatchJob(r.row_id, r.serial, r.state, r.spec) for r in rows]

    def record_submitted(self, task_id: int, batch: int, job_ids: list[int]) -> None:
        """The server's job ids of a batch, in serial order: its jobs are activated."""
        with self._engine.begin() as conn:
            rows = conn.execute(
                select(jobs.c.row_id, jobs.c.state).where(jobs.c.task_id == task_id, jobs.c.batch == batch)
                .order_by(jobs.c.serial)
            ).all()
            if len(rows) != len(job_ids):
                raise RuntimeError(f"task {task_id} batch {batch}: {len(rows)} jobs stored, "
                                   f"the server returned {len(job_ids)}")
            bulk.update_rows(conn, jobs, "row_id", [
                {"row_id": r.row_id, "job_id": j, "state": ACTIVATED if r.state == SUBMITTING else r.state}
                for r, j in zip(rows, job_ids, strict=True)
            ])
