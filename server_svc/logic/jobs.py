"""What the job API does, over the stores: each call in the database's threads, and the
dispatch hub told what changed (new work to hand out, events for the watchers, commands for
pilots)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from panda_runtime.service.db import DbRunner
from panda_runtime.service.filtering import Filter
from panda_runtime.service.listing import GroupCounts
from panda_runtime.service.ordering import Ordering
from panda_runtime.service.principals import Scope
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.jobs import JobEvent, JobRecord
from server_svc.domain.user_actions import ActionResult
from server_svc.logic.dispatch_hub import DispatchHub
from server_svc.store.actions import JobActionStore
from server_svc.store.events import EventLog
from server_svc.store.jobs import JobStore
from server_svc.store.submission import SubmissionStore

__all__ = ["JobOperations"]


class JobOperations:
    def __init__(
        self, db: DbRunner, jobs: JobStore, submission: SubmissionStore, actions: JobActionStore,
        events: EventLog, hub: DispatchHub,
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._submission = submission
        self._actions = actions
        self._events = events
        self._hub = hub

    async def submit(self, specs: list[JobSpec], *, owner: str, vo: str, request_id: str, caller: str = "",
                     digest: str = "") -> list[JobRecord]:
        records = await self._db.run(self._submission.submit, specs, owner=owner, vo=vo, request_id=request_id,
                                     caller=caller, digest=digest)
        self._hub.wake()
        self._hub.events_written.notify()
        return records

    async def get(self, job_id: int) -> JobRecord:
        return await self._db.run(self._jobs.get, job_id)

    async def list_jobs(
        self, where: Filter, *, limit: int, ordering: Ordering, after: Sequence[Any] | None, scope: Scope
    ) -> tuple[list[JobRecord], int]:
        return await self._db.run(
            self._jobs.list_jobs, where, limit=limit, ordering=ordering, after=after, scope=scope
        )

    async def count_jobs(self, where: Filter, group_by: Sequence[str], *, limit: int, scope: Scope) -> GroupCounts:
        return await self._db.run(self._jobs.count_jobs, where, group_by, limit=limit, scope=scope)

    async def kill(self, job_ids: list[int], reason: str, *, scope: Scope) -> list[ActionResult]:
        """Kill the jobs; the pilots holding some that are connected here get the command now."""
        results = await self._db.run(self._actions.kill, job_ids, reason, scope=scope)
        pilots = sorted({r.pilot_command[0] for r in results if r.pilot_command})
        if pilots:
            await self._hub.deliver_commands(pilots)
        self._hub.events_written.notify()
        return results

    async def reassign(self, job_ids: list[int], queue_id: str, *, scope: Scope) -> list[ActionResult]:
        results = await self._db.run(self._actions.reassign, job_ids, queue_id, scope=scope)
        self._hub.wake()
        self._hub.events_written.notify()
        return results

    async def set_priority(self, priority: int, *, job_ids: Sequence[int], task_id: int, scope: Scope) -> int:
        updated = await self._db.run(
            self._actions.set_priority, priority, job_ids=job_ids, task_id=task_id, scope=scope
        )
        if updated:
            self._hub.wake()
        return updated

    async def watch(
        self, cursor: int, *, from_now: bool, job_ids: Sequence[int], task_id: int, scope: Scope,
        done: Callable[[], bool],
    ) -> AsyncIterator[JobEvent]:
        """The events after `cursor` (or from now on), as they are written, until `done()`."""
        if not cursor and from_now:
            cursor = await self._db.run(self._events.last_cursor)
        while not done():
            events = await self._db.run(
                self._events.events_after, cursor, job_ids=job_ids, task_id=task_id, scope=scope
            )
            for event in events:
                cursor = event.cursor
                yield event
            if not events:
                await self._hub.events_written.wait(timeout=1.0)
