"""The commander's reads and writes: users' commands whose work reaches the server (left in
jedi_commands with the state change that accepted them), the jobs they act on, and what
came of them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, select, update

from jedi_svc.domain.jobs import JOB_FINAL_STATES, JobInFlight
from jedi_svc.store.common import record_event
from jedi_svc.store.records import Command
from jedi_svc.store.tables import commands, jobs, tasks
from panda_runtime.service.db import Store, now

__all__ = ["CommandStore"]


class CommandStore(Store):
    def pending_commands(self) -> list[Command]:
        with self._engine.connect() as conn:
            return [Command(**r._mapping) for r in conn.execute(
                select(commands, tasks.c.vo).join(tasks, tasks.c.task_id == commands.c.task_id)
                .where(commands.c.done_time.is_(None)).order_by(commands.c.command_id))]

    def command_done(self, command_id: int, note: str = "") -> None:
        """The command is done; a note goes to its task's history."""
        at = now()
        with self._engine.begin() as conn:
            row = conn.execute(update(commands).where(commands.c.command_id == command_id)
                               .values(done_time=at).returning(commands.c.task_id, commands.c.kind)).first()
            if row is not None and note:
                state = conn.execute(select(tasks.c.state).where(tasks.c.task_id == row.task_id)).scalar_one()
                record_event(conn, row.task_id, state, state, note, at)

    def jobs_in_flight(self, task_id: int, *, states: Sequence[str] = ()) -> list[JobInFlight]:
        """The task's jobs at the server that have not ended (optionally only in `states`)."""
        query = select(jobs.c.row_id, jobs.c.job_id, jobs.c.state, jobs.c.queue, jobs.c.spec).where(
            jobs.c.task_id == task_id, jobs.c.job_id.is_not(None), jobs.c.state.not_in(list(JOB_FINAL_STATES)))
        if states:
            query = query.where(jobs.c.state.in_(list(states)))
        with self._engine.connect() as conn:
            return [JobInFlight(**r._mapping) for r in conn.execute(query.order_by(jobs.c.job_id))]

    def set_job_queues(self, moves: list[tuple[int, str]]) -> None:
        """Record the queues the server moved jobs to, (job id, queue) pairs."""
        if not moves:
            return
        with self._engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.job_id == bindparam("b_job")).values(queue=bindparam("b_q")),
                         [{"b_job": j, "b_q": q} for j, q in moves])
