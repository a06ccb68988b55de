"""Commands for pilots (kill...), delivered on the stream of whichever server holds the pilot."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert, select, update

from panda_runtime.service.db import Store
from panda_runtime.service.db import now as utc_now
from server_svc.domain.user_actions import CommandKind, PilotCommand
from server_svc.store.tables import pilot_commands

__all__ = ["CommandStore", "write_commands"]


def write_commands(conn: Connection, commands: Sequence[PilotCommand]) -> None:
    if commands:
        conn.execute(insert(pilot_commands), [
            {"job_id": c.job_id, "attempt": c.attempt, "kind": c.kind.value, "reason": c.reason,
             "pilot_id": c.pilot_id, "create_time": c.create_time}
            for c in commands
        ])


class CommandStore(Store):
    def pending(self, pilot_ids: Sequence[str]) -> list[PilotCommand]:
        """Commands not yet delivered to these pilots."""
        if not pilot_ids:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(pilot_commands).where(
                    pilot_commands.c.pilot_id.in_(list(pilot_ids)), pilot_commands.c.delivered_time.is_(None)
                )
            )
            return [
                PilotCommand(r.job_id, r.attempt, CommandKind(r.kind), r.reason, r.pilot_id, r.create_time,
                             r.command_id, r.delivered_time)
                for r in rows
            ]

    def mark_delivered(self, command_ids: Sequence[int]) -> None:
        if not command_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(pilot_commands)
                .where(pilot_commands.c.command_id.in_(list(command_ids)))
                .values(delivered_time=utc_now())
            )
