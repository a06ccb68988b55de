"""One task's failure stays that task's: each agent does each task's work through a
`TaskGuard`, which breaks the task whose own data made the work fail (domain.breaking) and lets
the agent go on with the others. An outage (the database or the server out of reach) is nobody's
fault: it goes up to the agent's loop, which tries again later."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from jedi_svc.domain.breaking import refused_by_server, server_away
from jedi_svc.store.steps import TaskSteps
from panda_runtime.contracts import Violation
from panda_runtime.service.db import DbRunner, is_database_error, is_unavailable
from panda_runtime.service.errors import ServiceError, clip

__all__ = ["TaskGuard", "cause_of", "is_outage"]

log = logging.getLogger("panda.jedi")

T = TypeVar("T")


def _code_name(error: BaseException) -> str | None:
    """The status code's name of a gRPC call's error; None for any other error."""
    if isinstance(error, grpc.RpcError) and hasattr(error, "code"):
        return str(error.code().name)
    return None


def is_outage(error: BaseException) -> bool:
    """Nobody's fault, and over by itself: the database unreachable, or the server unable to
    serve anyone now (domain.breaking.OUTAGES)."""
    if is_unavailable(error):
        return True
    code = _code_name(error)
    if code is not None:
        return server_away(code)
    return isinstance(error, TimeoutError | ConnectionError)


def cause_of(error: BaseException) -> str:
    """What went wrong, as the task's history says it: the rule or the server's answer; never
    the database's own words (they may quote SQL)."""
    if isinstance(error, Violation | ServiceError):
        return clip(str(error), 500)
    code = _code_name(error)
    if code is not None:
        return clip(f"the server refused it: {code}: {getattr(error, 'details', lambda: '')()}", 500)
    if is_database_error(error):
        return f"the database refused the task's data ({type(getattr(error, 'orig', error)).__name__})"
    return clip(f"{type(error).__name__}: {error}", 500)


class TaskGuard:
    """Runs a piece of one task's work; breaks the task when its own data makes the work fail."""

    def __init__(self, db: DbRunner, steps: TaskSteps) -> None:
        self._db = db
        self._steps = steps

    async def run(self, task_id: int, what: str, work: Callable[[], Awaitable[T]]) -> T | None:
        """The work's result; None when it failed and the task was broken for it. An outage is
        raised as it came."""
        try:
            return await work()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if is_outage(error):
                raise
            code = _code_name(error)
            if code is not None and not refused_by_server(code):
                # The server's own fault with this request: this task waits for the next round.
                log.warning("task %d: %s failed: the server answered %s: %s; trying again next round", task_id,
                            what, code, clip(str(getattr(error, "details", lambda: "")()), 300))
                return None
            await self.break_task(task_id, what, error)
            return None

    async def break_task(self, task_id: int, what: str, error: BaseException) -> None:
        cause = cause_of(error)
        expected = isinstance(error, Violation | ServiceError | grpc.RpcError)
        # A rule's refusal says all there is to say; anything else gets its traceback too.
        log.warning("task %d: %s failed: %s; the task is broken, the others go on", task_id, what, cause,
                    exc_info=None if expected else error)
        if not await self._db.run(self._steps.break_task, task_id, what, cause):
            log.info("task %d had already ended", task_id)
