"""Users' commands: what each does to its task when the task's state accepts it
(domain.states), and what it then asks of the server (left for the commander): which jobs a
kill or a finish stops, where a reassign moves the jobs not yet started. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jedi_svc.domain import brokerage, states
from jedi_svc.domain.jobs import ACTIVATED, JobInFlight
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import Task, TaskChange
from panda_runtime.service.errors import InvalidArgument

__all__ = [
    "NOT_STARTED", "Accepted", "Reassignment", "Stop", "accept", "movable", "reassigned_note", "reassignment", "stop",
    "stopped_note",
]

# Jobs not yet started: those a finish cancels and a reassign moves.
NOT_STARTED = (ACTIVATED,)


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an accepted command does: the task's new state (or the same) with other values,
    a line in its history, the chunks not yet run cancelled or not, and the work left for
    the commander (kind and arguments; None when there is none)."""

    state: TaskState
    note: str
    change: TaskChange = field(default_factory=TaskChange)
    cancel_ready: bool = False
    work: tuple[str, dict[str, Any]] | None = None


def accept(task: Task, kind: str, *, reason: str = "", queues: list[str] | None = None,
           priority: int = 0) -> Accepted:
    """A user's command on `task`: FAILED_PRECONDITION when its state does not take it.
    kill: aborting, the chunks not run cancelled, every job killed; finish: finishing, the
    jobs not yet started cancelled; retry: toretry; pause: paused (remembering the state to
    resume); resume: back to that state; reassign: the task's queues, and its jobs not yet
    started moved there (a pending task brokered again); priority: the task's and its
    queued jobs'."""
    current = task.state
    states.check_command(task.task_id, kind, current)
    note = kind + (f": {reason}" if reason else "")
    resumed = TaskState(task.resume_state or TaskState.READY.value)
    accepted = Accepted(current, note)
    if kind == "kill":
        accepted = Accepted(TaskState.ABORTING, note, cancel_ready=True,
                            work=("kill", {"reason": reason or "task killed"}))
    elif kind == "finish":
        accepted = Accepted(TaskState.FINISHING, note,
                            work=("finish", {"reason": reason or "task finished by request"}))
    elif kind == "retry":
        accepted = Accepted(TaskState.TORETRY, note, TaskChange(end_time=None))
    elif kind == "pause":
        keep = task.resume_state if current == TaskState.PENDING else current.value
        accepted = Accepted(TaskState.PAUSED, note, TaskChange(resume_state=keep))
    elif kind == "resume":
        accepted = Accepted(resumed, note, TaskChange(resume_state="", wait_until=None))
    elif kind == "reassign":
        if not queues:
            raise InvalidArgument("give at least one queue", field="queues")
        names = list(dict.fromkeys(queues))
        accepted = Accepted(
            resumed if current == TaskState.PENDING else current,
            f"reassign to {', '.join(names)}" + (f": {reason}" if reason else ""),
            TaskChange(queues=names, excluded_queues=[q for q in task.excluded_queues if q not in queues],
                       wait_until=None),
            work=("reassign", {"queues": names}))
    elif kind == "priority":
        accepted = Accepted(current, f"priority {task.priority} -> {priority}", TaskChange(priority=priority),
                            work=("priority", {"priority": priority}))
    if accepted.state != current:
        states.check_transition(task.task_id, current, accepted.state)
    return accepted


@dataclass(frozen=True, slots=True)
class Stop:
    """Kill the task's jobs in flight in these states (all when empty), saying why."""

    states: tuple[str, ...]
    reason: str


def stop(kind: str, args: Mapping[str, Any]) -> Stop | None:
    """kill stops every job of the task; finish only those not yet started (the others run
    to their end). None for the other commands."""
    if kind == "kill":
        return Stop((), args.get("reason", "task killed"))
    if kind == "finish":
        return Stop(NOT_STARTED, args.get("reason", "task finished"))
    return None


def stopped_note(kind: str, count: int) -> str:
    """The task's history line once the server was asked ("" when no job was in flight)."""
    if not count:
        return ""
    return f"kill sent for {count} job(s)" if kind == "kill" else f"cancelled {count} job(s) not yet started"


@dataclass(frozen=True, slots=True)
class Reassignment:
    # Queue -> server job ids to move there.
    moves: dict[str, list[int]] = field(default_factory=dict)
    # Why nothing moves, when that is worth the task's history.
    note: str = ""


def movable(jobs: list[JobInFlight], names: list[str]) -> list[JobInFlight]:
    """The jobs not yet started (`jobs`) a reassign to the queues `names` moves: those on
    none of them."""
    return [j for j in jobs if j.queue not in names]


def reassignment(movable: list[JobInFlight], queues: list[brokerage.QueueInfo], names: list[str],
                 vo: str = "") -> Reassignment:
    """Each movable job brokered to one of the queues `names` (`queues`: the server's), as new
    jobs are (of the task's `vo`)."""
    if not movable:
        return Reassignment()
    resources = movable[0].spec["resources"]
    request = brokerage.JobRequest(resources["cores"], resources["memory_mb"], resources["walltime_seconds"],
                                   resources["disk_mb"])
    found = brokerage.candidates([q for q in queues if q.queue_id in names], request, allowed=names, excluded=[])
    if not found.queues:
        return Reassignment(note=f"reassign: none of the {len(movable)} queued job(s) moved: {found.reason()}")
    inputs = [[(f.get("size_bytes", 0), [f.get("storage_element", "")]) for f in j.spec["files"]
               if f["kind"] == "input"] for j in movable]
    moves: dict[str, list[int]] = {}
    stay = 0
    for job, queue in zip(movable, brokerage.assign(found.queues, inputs, vo), strict=True):
        if queue is None:
            stay += 1  # its inputs are on elements none of the queues may read: the server would refuse
        else:
            moves.setdefault(queue.queue_id, []).append(job.job_id)
    note = ""
    if stay:
        note = (f"reassign: {stay} queued job(s) stay where they are: their inputs are on storage elements "
                f"{', '.join(names)} may not read")
    return Reassignment(moves, note)


def reassigned_note(moved: list[tuple[int, str]], queues: list[str]) -> str:
    """The task's history line for the jobs the server moved, (job id, queue) pairs."""
    return f"reassigned {len(moved)} queued job(s): " + ", ".join(
        f"{q} x{sum(1 for _, m in moved if m == q)}" for q in sorted(queues))
