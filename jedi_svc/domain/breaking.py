"""When one task cannot be processed because of what it holds (a stored value a rule refuses, a
job the server would refuse, a batch the server refused), that task alone is broken, with the
reason in its history, and the agents go on with every other task. What is nobody's fault (the
database or the server out of reach) breaks nothing: the agent tries again later. No I/O: the
logic tells which is which and asks these rules what follows."""

from __future__ import annotations

from jedi_svc.domain.states import FINAL_STATES, TaskState
from jedi_svc.domain.tasks import TaskChange

__all__ = ["MAX_REASON_LENGTH", "OUTAGES", "REFUSALS", "broken", "refused_by_server", "server_away"]

# The server's answers that say the request itself is at fault: sending it again cannot help.
REFUSALS = frozenset({"INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
                      "OUT_OF_RANGE"})
# The server's answers that say it cannot serve anyone now (or JEDI's own credentials or limits
# are wrong): every task would get them, so they break none. Anything else it answers (INTERNAL,
# UNKNOWN, ...) is its own fault with this request: the task is tried again next round, alone.
OUTAGES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED",
                     "UNAUTHENTICATED"})
# A reason is kept whole in the history up to this length.
MAX_REASON_LENGTH = 1000


def refused_by_server(code_name: str) -> bool:
    """Whether the server's answer (a gRPC status code's name) refuses the request for good."""
    return code_name in REFUSALS


def server_away(code_name: str) -> bool:
    """Whether the server's answer says it cannot serve anyone now."""
    return code_name in OUTAGES


def broken(current: TaskState, what: str, cause: str) -> TaskChange | None:
    """BROKEN, saying what failed and why, unless the task already ended (then nothing)."""
    if current in FINAL_STATES:
        return None
    reason = f"{what}: {cause}"
    if len(reason) > MAX_REASON_LENGTH:
        reason = reason[: MAX_REASON_LENGTH - 3] + "..."
    return TaskChange(TaskState.BROKEN, reason)
