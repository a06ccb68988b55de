"""What users do to jobs: kill them, move them to another queue, change their priority."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Connection, select, update

from panda_runtime.service.db import Store, scope_condition
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.errors import NotFound
from panda_runtime.service.principals import EVERYTHING, Scope
from server_svc.domain.jobs import Job, JobChanges
from server_svc.domain.states import QUEUED_STATES
from server_svc.domain.storage import reassign_problem
from server_svc.domain.user_actions import ActionDecision, ActionResult, kill, reassign
from server_svc.store.commands import write_commands
from server_svc.store.job_rows import read_jobs, write_changes
from server_svc.store.storage_store import read_elements
from server_svc.store.tables import job_files, jobs, queues

__all__ = ["JobActionStore"]


class JobActionStore(Store):
    def kill(self, job_ids: list[int], reason: str, *, scope: Scope = EVERYTHING) -> list[ActionResult]:
        """Kill each job as `domain.user_actions.kill` says; a job a pilot holds gets a command."""
        reason = reason or "killed by request"
        with self._engine.begin() as conn:
            decisions = self._act(conn, job_ids, lambda job_id, job, now: kill(job_id, job, scope, reason, now))
            write_commands(conn, [d.command for d in decisions if d.command is not None])
        return [d.result for d in decisions]

    def reassign(self, job_ids: list[int], queue_id: str, *, scope: Scope = EVERYTHING) -> list[ActionResult]:
        """Move each job to `queue_id` as `domain.user_actions.reassign` says; the outputs of
        those that moved go to that queue's storage element."""
        with self._engine.begin() as conn:
            queue_element = conn.execute(
                select(queues.c.storage_element).where(queues.c.queue_id == queue_id)).scalar()
            if queue_element is None:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
            files: dict[int, list[tuple[str, str]]] = {}
            for row in conn.execute(select(job_files.c.job_id, job_files.c.kind, job_files.c.storage_element)
                                    .where(job_files.c.job_id.in_(job_ids))):
                files.setdefault(row.job_id, []).append((row.kind, row.storage_element))
            elements = read_elements(conn, [queue_element, *(e for fs in files.values() for _, e in fs)])

            def storage_problem(job: Job) -> str:
                return reassign_problem(queue_id, queue_element, files.get(job.job_id, []), job.vo, elements)

            decisions = self._act(
                conn, job_ids, lambda job_id, job, now: reassign(job_id, job, scope, queue_id, now, storage_problem)
            )
            results = [d.result for d in decisions]
            conn.execute(
                update(job_files)
                .where(job_files.c.job_id.in_([r.job_id for r in results if r.error is None]))
                .where(job_files.c.kind != "input")
                .values(storage_element=queue_element)
            )
        return results

    @staticmethod
    def _act(
        conn: Connection, job_ids: list[int], decide: Callable[[int, Job | None, datetime], ActionDecision]
    ) -> list[ActionDecision]:
        """Lock the jobs, decide job by job (in the order asked), write the changed jobs."""
        now = utc_now()
        changes = JobChanges()
        decisions: list[ActionDecision] = []
        found = read_jobs(conn, job_ids, lock=True)
        for job_id in job_ids:
            job = found.get(job_id)
            decision = decide(job_id, job, now)
            decisions.append(decision)
            if decision.change is not None and job is not None:
                changes.add(job, decision.change)
        write_changes(conn, changes)
        return decisions

    def set_priority(
        self, priority: int, *, job_ids: Sequence[int] = (), task_id: int = 0, scope: Scope = EVERYTHING
    ) -> int:
        """New priority for the jobs not yet sent to a pilot among those named; returns how many."""
        target = jobs.c.job_id.in_(list(job_ids)) if job_ids else jobs.c.task_id == task_id
        query = (
            update(jobs)
            .where(target, jobs.c.state.in_([s.value for s in QUEUED_STATES]),
                   scope_condition(scope, jobs.c.owner, jobs.c.vo), jobs.c.priority != priority)
            .values(priority=priority, update_time=utc_now())
        )
        with self._engine.begin() as conn:
            updated: int = conn.execute(query).rowcount
            return updated
