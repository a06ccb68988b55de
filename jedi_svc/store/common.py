"""What every JEDI store shares: time, SQLite's naive datetimes, row locks, list filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.sql import ColumnElement

from jedi_svc.store.tables import task_events
from panda_runtime.db import is_sqlite
from panda_runtime.filtering import Comparison, like_pattern


def now() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time stored is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class Store:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)

    def _locked(self, query: Any) -> Any:
        """Row locks on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the only write lock."""
        return query if self._sqlite else query.with_for_update()


def condition(column: ColumnElement[Any], comparison: Comparison) -> ColumnElement[bool]:
    value = comparison.value
    if comparison.is_pattern:
        match = column.like(like_pattern(value), escape="\\")
        return match if comparison.op == "=" else ~match
    return {
        "=": column == value, "!=": column != value, "<": column < value,
        "<=": column <= value, ">": column > value, ">=": column >= value,
    }[comparison.op]


def record_event(conn: Connection, task_id: int, state: str, previous: str, reason: str, at: datetime) -> None:
    conn.execute(insert(task_events).values(
        task_id=task_id, state=state, previous_state=previous, time=at, reason=reason[:4000]
    ))
