"""What the generator does with a task now: which of its ready chunks become jobs (scouts
first, at most so many), to which candidate queues, or why none (pending: no queue fits;
throttled: too many jobs queued). No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from jedi_svc.domain import brokerage
from jedi_svc.domain.chunks import TaskChunk, job_groups
from jedi_svc.domain.states import GENERATING_STATES, TaskState
from jedi_svc.domain.tasks import Task, TaskChange, underlying_state

__all__ = ["Limits", "Plan", "may_plan", "needs_ready_chunks", "pending_change", "plan"]


@dataclass(frozen=True, slots=True)
class Limits:
    # A pending task (no queue fits) is brokered again after this long.
    pending_retry_seconds: float
    # Jobs to make in this round at most; 0: every ready chunk's.
    max_jobs: int = 0
    # Jobs of a task not yet started at most (0: no limit): the task goes THROTTLED at this many
    # and comes back when half of them started.
    max_queued: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    # The chunks of each job to make, and the queues they may go to.
    groups: list[list[TaskChunk]] = field(default_factory=list)
    queues: list[brokerage.QueueInfo] = field(default_factory=list)
    scouting: bool = False
    # What becomes of the task when no job is made (None: nothing).
    change: TaskChange | None = None
    # Why no queue fits, when none does.
    pending_reason: str = ""


def may_plan(state: TaskState, wait_until: datetime | None, at: datetime) -> bool:
    """The generator looks at a task that generates jobs, or is throttled, or is pending and
    its wait is over."""
    if state == TaskState.PENDING:
        return wait_until is None or wait_until <= at
    return state in GENERATING_STATES or state == TaskState.THROTTLED


def needs_ready_chunks(state: TaskState) -> bool:
    """Whether a task is worth planning only with chunks ready: a pending or throttled one is
    planned without (it may have to leave that state)."""
    return state not in (TaskState.PENDING, TaskState.THROTTLED)


def plan(task: Task, ready: list[TaskChunk], queued: int, queues: list[brokerage.QueueInfo], limits: Limits,
         at: datetime) -> Plan:
    """For a task may_plan takes, its `ready` chunks (in order), its jobs `queued` (not yet
    started; read only when limits.max_queued) and the server's queues."""
    if not ready:
        if task.state == TaskState.PENDING:
            return Plan(change=TaskChange(underlying_state(task), "nothing left to broker", resume_state="",
                                          wait_until=None))
        return Plan()
    underlying = underlying_state(task)
    max_jobs = limits.max_jobs
    if limits.max_queued:
        if task.state == TaskState.THROTTLED and queued > limits.max_queued // 2:
            return Plan()
        if task.state != TaskState.THROTTLED and queued >= limits.max_queued:
            return Plan(change=TaskChange(
                TaskState.THROTTLED, f"{queued} job(s) queued, at most {limits.max_queued} per task: the others "
                "wait until some start", resume_state=underlying.value))
        max_jobs = min(max_jobs or limits.max_queued, limits.max_queued - queued)
    elif task.state == TaskState.THROTTLED:
        return Plan()
    scouting = not task.scouted and task.scout_jobs > 0
    groups = job_groups(ready)
    if scouting:
        # Scouts first: a few jobs of fresh chunks, and nothing else until they end.
        groups = [g for g in groups if g[0].attempts == 0][: task.scout_jobs]
        if not groups:
            return Plan()
    if max_jobs:
        groups = groups[:max_jobs]
    found = brokerage.candidates(queues, task.job_request(), allowed=task.queues, excluded=task.excluded_queues)
    if not found.queues:
        return _pending(task, "no queue fits: " + found.reason(), underlying, at + timedelta(
            seconds=limits.pending_retry_seconds))
    return Plan(groups=groups, queues=found.queues, scouting=scouting)


def _pending(task: Task, reason: str, underlying: TaskState, wait_until: datetime) -> Plan:
    return Plan(change=pending_change(task, reason, underlying, wait_until), pending_reason=reason)


def pending_change(task: Task, reason: str, underlying: TaskState, wait_until: datetime) -> TaskChange:
    """PENDING until wait_until; a pending task's history gets a new reason only when it changed."""
    if task.state != TaskState.PENDING:
        return TaskChange(TaskState.PENDING, reason, resume_state=underlying.value, wait_until=wait_until)
    if reason != task.state_reason:
        return TaskChange(TaskState.PENDING, reason, wait_until=wait_until)
    return TaskChange(wait_until=wait_until)
