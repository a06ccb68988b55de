"""The task state machine and which commands each state accepts (PanDA's rules), no I/O."""

from __future__ import annotations

from enum import StrEnum

from panda_runtime.contracts.jedi import TASK_COMMAND_STATES
from panda_runtime.service.errors import FailedPrecondition

__all__ = [
    "ACTIVE_STATES", "ALLOWED", "COMMAND_STATES", "FINAL_STATES", "GENERATING_STATES", "TaskState", "can_transition",
    "check_command", "check_transition",
]


class TaskState(StrEnum):
    REGISTERED = "registered"
    DEFINED = "defined"
    READY = "ready"
    SCOUTING = "scouting"
    SCOUTED = "scouted"
    RUNNING = "running"
    DONE = "done"
    FINISHED = "finished"
    FAILED = "failed"
    PENDING = "pending"
    PAUSED = "paused"
    THROTTLED = "throttled"
    EXHAUSTED = "exhausted"
    ABORTING = "aborting"
    ABORTED = "aborted"
    FINISHING = "finishing"
    TORETRY = "toretry"
    BROKEN = "broken"


S = TaskState

# No agent moves a task out of these; only RetryTask reopens some of them.
FINAL_STATES = frozenset({S.DONE, S.FINISHED, S.FAILED, S.ABORTED, S.BROKEN})
# States in which JEDI generates jobs (when inputs are waiting and a queue fits).
GENERATING_STATES = frozenset({S.READY, S.SCOUTED, S.RUNNING})
# Working states: the agents move the task on by themselves.
ACTIVE_STATES = frozenset({S.READY, S.PENDING, S.SCOUTING, S.SCOUTED, S.RUNNING, S.THROTTLED})

# Every change an agent or a command may make.
_ANY_LIVE = {S.REGISTERED, S.DEFINED, S.READY, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PENDING, S.PAUSED,
             S.THROTTLED, S.EXHAUSTED, S.FINISHING, S.TORETRY}
ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    S.REGISTERED: frozenset({S.DEFINED, S.BROKEN, S.PAUSED, S.ABORTING, S.ABORTED}),
    S.DEFINED: frozenset({S.READY, S.BROKEN, S.PAUSED, S.ABORTING, S.ABORTED}),
    S.READY: frozenset({S.SCOUTING, S.RUNNING, S.PENDING, S.PAUSED, S.THROTTLED, S.FINISHING, S.ABORTING,
                        S.DONE, S.FINISHED, S.FAILED, S.EXHAUSTED}),
    S.PENDING: frozenset({S.READY, S.SCOUTING, S.SCOUTED, S.RUNNING, S.THROTTLED, S.PAUSED, S.FINISHING,
                          S.ABORTING}),
    S.SCOUTING: frozenset({S.SCOUTED, S.BROKEN, S.PAUSED, S.FINISHING, S.ABORTING, S.EXHAUSTED}),
    S.SCOUTED: frozenset({S.RUNNING, S.PENDING, S.PAUSED, S.THROTTLED, S.FINISHING, S.ABORTING,
                          S.DONE, S.FINISHED, S.FAILED, S.EXHAUSTED}),
    S.RUNNING: frozenset({S.PENDING, S.PAUSED, S.THROTTLED, S.FINISHING, S.ABORTING, S.EXHAUSTED,
                          S.DONE, S.FINISHED, S.FAILED}),
    S.THROTTLED: frozenset({S.READY, S.SCOUTED, S.RUNNING, S.PENDING, S.PAUSED, S.FINISHING, S.ABORTING}),
    S.PAUSED: frozenset({S.REGISTERED, S.DEFINED, S.READY, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PENDING,
                         S.THROTTLED, S.FINISHING, S.ABORTING}),
    S.EXHAUSTED: frozenset({S.TORETRY, S.FINISHING, S.ABORTING}),
    S.FINISHING: frozenset({S.FINISHED, S.DONE, S.ABORTING}),
    S.ABORTING: frozenset({S.ABORTED}),
    S.TORETRY: frozenset({S.READY, S.ABORTING, S.PAUSED}),
    S.DONE: frozenset(),
    S.FINISHED: frozenset({S.TORETRY}),
    S.FAILED: frozenset({S.TORETRY}),
    S.ABORTED: frozenset({S.TORETRY}),
    S.BROKEN: frozenset(),
}
# A task whose own data (parameters, files, jobs) cannot be processed is broken from whatever
# live state it is in, so that it stops and every other task goes on (domain.breaking).
for _live in (*_ANY_LIVE, S.ABORTING):
    ALLOWED[_live] = ALLOWED[_live] | {S.BROKEN}

# Commands and the states PanDA accepts them in (the contract, shared with the monitor).
COMMAND_STATES: dict[str, frozenset[TaskState]] = {
    command: frozenset(TaskState(name) for name in names) for command, names in TASK_COMMAND_STATES.items()
}


def can_transition(current: TaskState, new: TaskState) -> bool:
    return new in ALLOWED[current]


def check_transition(task_id: int, current: TaskState, new: TaskState) -> None:
    if not can_transition(current, new):
        raise FailedPrecondition(f"task {task_id} is {current.value}: it cannot become {new.value}",
                                 subject=f"tasks/{task_id}")


def check_command(task_id: int, command: str, current: TaskState) -> None:
    """FAILED_PRECONDITION, naming the current state and the accepted ones, for a command
    the task's state does not take."""
    allowed = COMMAND_STATES[command]
    if current not in allowed:
        accepted = ", ".join(sorted(s.value for s in allowed))
        raise FailedPrecondition(
            f"task {task_id} is {current.value}: {command} is accepted only when it is {accepted}",
            subject=f"tasks/{task_id}",
        )
