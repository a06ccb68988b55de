"""Pilot identities: issued, resumed, and when each pilot was last heard on its stream (the
watchdogs' sweep forgets the long silent ones)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from panda_runtime.service.bulk import update_rows
from panda_runtime.service.db import Store, aware
from server_svc.domain.pilots import PilotIdentity
from server_svc.store.tables import pilots

__all__ = ["PilotStore"]


class PilotStore(Store):
    def get(self, pilot_id: str) -> PilotIdentity | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(pilots).where(pilots.c.pilot_id == pilot_id)).first()
        if row is None:
            return None
        values = dict(row._mapping)
        values["first_seen"], values["last_seen"] = aware(row.first_seen), aware(row.last_seen)
        return PilotIdentity(**values)

    def create(self, identity: PilotIdentity) -> bool:
        """Store a new identity; False when its id is taken already."""
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(pilots).values(asdict(identity)))
        except IntegrityError:
            return False
        return True

    def resumed(self, pilot_id: str, queue: str, node: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(pilots).where(pilots.c.pilot_id == pilot_id).values(queue=queue, node=node, last_seen=now)
            )

    def seen(self, last_seen: Sequence[tuple[str, datetime]]) -> None:
        """When each of these pilots was last heard on its stream, in one statement."""
        rows = [{"pilot_id": pilot_id, "last_seen": moment} for pilot_id, moment in last_seen]
        if rows:
            with self._engine.begin() as conn:
                update_rows(conn, pilots, "pilot_id", rows)
