"""The commander: what users' commands need from the server (kill, finish, reassign jobs, new
priority), each done once and noted in the task's history."""

from __future__ import annotations

import logging
from functools import partial

from jedi_svc.domain import commands
from jedi_svc.logic.confinement import TaskGuard
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.logic.submitter import Submitter
from jedi_svc.store.command_store import CommandStore
from jedi_svc.store.records import Command
from panda_runtime.service.db import DbRunner

__all__ = ["Commander"]

log = logging.getLogger("panda.jedi")


class Commander:
    def __init__(self, db: DbRunner, store: CommandStore, server: ServerCalls, submitter: Submitter,
                 guard: TaskGuard) -> None:
        self._db = db
        self._store = store
        self._server = server
        self._submitter = submitter
        self._guard = guard

    async def step(self) -> list[int]:
        """Every pending command done; returns their tasks. A command that cannot be carried
        out breaks its task, and is done: the others go on."""
        touched: list[int] = []
        for command in await self._db.run(self._store.pending_commands):
            note = await self._guard.run(command.task_id, f"the {command.kind} command",
                                         partial(self._execute, command))
            # A command that broke its task is done: the task's history says why.
            await self._db.run(self._store.command_done, command.command_id, note or "")
            touched.append(command.task_id)
        return touched

    async def _execute(self, command: Command) -> str:
        task_id, kind, args = command.task_id, command.kind, command.args
        # The task's stored batches first: their jobs are among those the command acts on.
        await self._submitter.resolve([task_id])
        stop = commands.stop(kind, args)
        if stop is not None:
            jobs = await self._db.run(self._store.jobs_in_flight, task_id, states=stop.states)
            if jobs:
                await self._server.kill_jobs([j.job_id for j in jobs], stop.reason)
            return commands.stopped_note(kind, len(jobs))
        if kind == "reassign":
            return await self._reassign(task_id, list(args.get("queues", [])), command.vo)
        if kind == "priority":
            changed = await self._server.set_task_jobs_priority(task_id, int(args["priority"]))
            return f"priority {args['priority']} set on {changed} queued job(s)" if changed else ""
        log.warning("task %d: unknown command %r ignored", task_id, kind)
        return ""

    async def _reassign(self, task_id: int, names: list[str], vo: str) -> str:
        jobs = await self._db.run(self._store.jobs_in_flight, task_id, states=commands.NOT_STARTED)
        movable = commands.movable(jobs, names)
        if not movable:
            return ""
        plan = commands.reassignment(movable, await self._server.list_queues(), names, vo)
        moved: list[tuple[int, str]] = []
        for queue_id, job_ids in plan.moves.items():
            moved += [(j, queue_id) for j in await self._server.reassign_jobs(job_ids, queue_id)]
        if not plan.moves:
            return plan.note
        await self._db.run(self._store.set_job_queues, moved)
        note = commands.reassigned_note(moved, list(plan.moves))
        return f"{note}; {plan.note}" if plan.note else note
