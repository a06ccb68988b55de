"""What every JEDI store shares: list filters and the task event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, and_, func, insert, or_, select
from sqlalchemy.sql import ColumnElement

from jedi_svc.store.tables import task_events
from panda_runtime.service.idempotency import lock_key

__all__ = ["earlier_request", "record_event"]


def record_event(conn: Connection, task_id: int, state: str, previous: str, reason: str, at: datetime) -> None:
    conn.execute(insert(task_events).values(
        task_id=task_id, state=state, previous_state=previous, time=at, reason=reason[:4000]
    ))


def earlier_request(conn: Connection, table: Table, result: ColumnElement[Any], request_id: str, caller: str,
                    owner: str, *, locked: bool) -> tuple[Any, str | None] | None:
    """(`result`, request digest) of the row the caller's earlier call with this key made, if
    any. With `locked` (PostgreSQL), calls with one key wait for each other, so two of them
    never both create; SQLite's single writer does it there. Keys stored before callers were
    recorded count for the row's owner."""
    if locked:
        conn.execute(select(func.pg_advisory_xact_lock(lock_key(caller, request_id))))
    c = table.c
    mine = or_(c.request_caller == caller, and_(c.request_caller.is_(None), c.owner == owner))
    row = conn.execute(select(result, c.request_digest).where(c.request_id == request_id, mine)).first()
    return None if row is None else (row[0], row[1])
