"""The job event log: every state change in commit order (its cursor is what WatchJobs
resumes from), and how a transaction appends to it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, func, select, text

from panda_runtime.service.bulk import Statement, insert_statement, run_statements
from panda_runtime.service.db import Store, scope_condition
from panda_runtime.service.principals import EVERYTHING, Scope
from server_svc.domain.jobs import JobEvent
from server_svc.domain.states import JobState
from server_svc.store.tables import job_events, jobs

__all__ = ["EVENT_COLUMNS", "EVENT_LOG_LOCK_KEY", "EventLog", "append_events", "event_from_row",
           "event_log_lock", "event_statements"]

EVENT_COLUMNS = ("job_id", "attempt", "state", "previous_state", "time", "error_code", "reason", "queue", "task_id")
# PostgreSQL advisory lock taken by every transaction that appends job events.
EVENT_LOG_LOCK_KEY = 0x70616E6462
_LOCK_EVENT_LOG = text(f"SELECT pg_advisory_xact_lock({EVENT_LOG_LOCK_KEY})")
_STATES = {state.value: state for state in JobState}


def event_log_lock(conn: Connection) -> Statement | None:
    """Cursor order is commit order: on PostgreSQL a transaction takes its cursors under a lock
    held until it commits, so a watcher that has read cursor N never later finds a smaller
    cursor committed behind it (SQLite has one writer at a time). This is the statement that
    takes it, unless this transaction holds it already; from now on the transaction counts as
    holding it, so the statement must be run."""
    if conn.dialect.name != "postgresql":
        return None
    transaction = conn.get_transaction()
    if conn.info.get("event_log_locked_by") is transaction:
        return None
    conn.info["event_log_locked_by"] = transaction
    return _LOCK_EVENT_LOG, {}


def _event_row(event: JobEvent) -> dict[str, Any]:
    # A state is a str: written as it is.
    return {
        "job_id": event.job_id, "attempt": event.attempt, "state": event.state,
        "previous_state": event.previous_state or "", "time": event.time, "error_code": event.error_code,
        "reason": event.reason, "queue": event.queue, "task_id": event.task_id,
    }


def event_statements(conn: Connection, events: Sequence[JobEvent]) -> list[Statement | None]:
    """What appends the events to the log, in commit order."""
    if not events:
        return []
    return [event_log_lock(conn), insert_statement(conn, job_events, [_event_row(e) for e in events], EVENT_COLUMNS)]


def append_events(conn: Connection, events: Sequence[JobEvent]) -> None:
    """Append to the event log, in commit order."""
    run_statements(conn, event_statements(conn, events))


def event_from_row(row: Mapping[Any, Any]) -> JobEvent:
    return JobEvent(
        row["job_id"], row["attempt"], _STATES[row["state"]], _STATES.get(row["previous_state"]), row["time"],
        row["error_code"], row["reason"], row["queue"], row["task_id"], row["cursor"],
    )


class EventLog(Store):
    def events_after(
        self, cursor: int, *, job_ids: Sequence[int] = (), task_id: int = 0, limit: int = 500,
        scope: Scope = EVERYTHING,
    ) -> list[JobEvent]:
        """The events after `cursor`, in order, among those of the jobs `scope` covers."""
        query = select(job_events).where(job_events.c.cursor > cursor).order_by(job_events.c.cursor).limit(limit)
        if not scope.everything:
            visible = select(jobs.c.job_id).where(scope_condition(scope, jobs.c.owner, jobs.c.vo))
            query = query.where(job_events.c.job_id.in_(visible))
        if job_ids:
            query = query.where(job_events.c.job_id.in_(list(job_ids)))
        if task_id:
            query = query.where(job_events.c.task_id == task_id)
        with self._engine.connect() as conn:
            return [event_from_row(r._mapping) for r in conn.execute(query)]

    def last_cursor(self) -> int:
        with self._engine.connect() as conn:
            cursor: int = conn.execute(select(func.coalesce(func.max(job_events.c.cursor), 0))).scalar_one()
            return cursor
