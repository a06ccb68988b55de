"""What every JEDI store shares: list filters and the task event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.sql import ColumnElement

from jedi_svc.store.tables import task_events
from panda_runtime.service.filtering import Comparison, like_pattern

__all__ = ["condition", "record_event"]


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
