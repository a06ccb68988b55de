"""Jobs, their files, their event log and pilot commands: every read and write the server
makes on them. Each method is one transaction; batches are written with executemany."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    TextClause,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.sql import ColumnElement

from panda_runtime.service.bulk import (
    Statement,
    insert_rows,
    insert_statement,
    new_ids,
    run_statements,
    update_rows,
    update_statement,
)
from panda_runtime.service.db import Store, scope_condition
from panda_runtime.service.db import now as utc_now
from panda_runtime.service.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ServiceError
from panda_runtime.service.filtering import Comparison
from panda_runtime.service.principals import EVERYTHING, Scope
from server_svc.domain import error_codes
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.states import (
    FINAL_STATES,
    PILOT_STATES,
    QUEUED_STATES,
    JobState,
    can_transition,
    check_transition,
    is_heartbeat,
)
from server_svc.store.queue_store import DISPATCHING_STATUSES
from server_svc.store.tables import job_events, job_files, jobs, pilot_commands, queues

# Columns a state change may touch; every batched UPDATE writes exactly these.
MUTABLE = (
    "state", "attempt", "queue", "state_time", "update_time", "heartbeat_time", "start_time", "end_time",
    "exit_code", "error_code", "error_diag", "log_tail", "max_rss_mb", "cpu_seconds", "pilot_id", "node",
    "kill_requested",
)
# What a state change reads: the mutable columns, and what deciding the change needs (owner
# and VO for scope checks, max attempts for retries, task and queue for the event).
_STATE_COLUMNS = tuple(jobs.c[name] for name in ("job_id", "owner", "vo", "task_id", "max_attempts", *MUTABLE))
_MAX_LOG_TAIL = 16 * 1024
# Every column of a new job (its id included), as SubmitJobs writes them.
JOB_COLUMNS = tuple(str(column.name) for column in jobs.columns if column.name not in (
    "start_time", "end_time", "heartbeat_time"))
FILE_COLUMNS = ("job_id", "lfn", "kind", "status", "size_bytes", "adler32", "storage_element", "attempt")
EVENT_COLUMNS = ("job_id", "attempt", "state", "previous_state", "time", "error_code", "reason", "queue", "task_id")
# PostgreSQL advisory lock taken by every transaction that appends job events.
EVENT_LOG_LOCK_KEY = 0x70616E6462


_LOCK_EVENT_LOG = text(f"SELECT pg_advisory_xact_lock({EVENT_LOG_LOCK_KEY})")


def _event_log_lock(conn: Connection) -> Statement | None:
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


def event_statements(conn: Connection, events: list[dict[str, Any]]) -> list[Statement | None]:
    """What appends the events to the log, in commit order."""
    if not events:
        return []
    return [_event_log_lock(conn), insert_statement(conn, job_events, events, EVENT_COLUMNS)]


def append_events(conn: Connection, events: list[dict[str, Any]]) -> None:
    """Append to the event log, in commit order."""
    run_statements(conn, event_statements(conn, events))


# Output files registered by finished jobs (SQLite: an executemany of the same update).
_PG_OUTPUT_FILES = text(
    "UPDATE job_files SET status = 'ready', size_bytes = v.size_bytes, adler32 = v.adler32,"
    " storage_element = v.storage_element, attempt = v.attempt"
    " FROM json_to_recordset(CAST(:rows AS json))"
    " AS v(job_id bigint, lfn text, size_bytes bigint, adler32 text, storage_element text, attempt integer)"
    " WHERE job_files.job_id = v.job_id AND job_files.lfn = v.lfn AND job_files.kind <> 'input'"
    " AND job_files.job_id = ANY(CAST(:job_ids AS bigint[]))"  # found by index, whatever the statistics
)
_OUTPUT_FILES = (
    update(job_files)
    .where(job_files.c.job_id == bindparam("b_job_id"), job_files.c.lfn == bindparam("b_lfn"),
           job_files.c.kind != "input")
    .values(status="ready", size_bytes=bindparam("b_size_bytes"), adler32=bindparam("b_adler32"),
            storage_element=bindparam("b_storage_element"), attempt=bindparam("b_attempt"))
)


def _output_files_statement(conn: Connection, files: list[dict[str, Any]]) -> Statement | None:
    if not files:
        return None
    if conn.dialect.name == "postgresql":
        return _PG_OUTPUT_FILES, {"rows": orjson.dumps(files).decode(), "job_ids": sorted({f["job_id"] for f in files})}
    return _OUTPUT_FILES, [{f"b_{name}": value for name, value in f.items()} for f in files]


# The "sent" events of claimed jobs, written from their rows by the database itself.
_SENT_EVENTS = insert(job_events).from_select(
    EVENT_COLUMNS,
    select(
        jobs.c.job_id, jobs.c.attempt, literal(JobState.SENT.value), literal(JobState.ACTIVATED.value),
        jobs.c.state_time, literal(0), literal("sent to pilot ") + jobs.c.pilot_id, jobs.c.queue, jobs.c.task_id,
    )
    .where(jobs.c.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(jobs.c.priority.desc(), jobs.c.job_id),
)


# PostgreSQL advisory lock held by the replica that runs the watchdogs.
WATCHDOG_LOCK_KEY = 0x70616E6461  # "panda"


@dataclass
class ActionResult:
    job_id: int
    state: str = ""
    error: ServiceError | None = None
    # (pilot_id, attempt) when a command must reach the pilot holding the job.
    pilot_command: tuple[str, int] | None = None


@dataclass
class PilotUpdate:
    """One JobUpdate from a pilot's stream."""

    job_id: int
    attempt: int
    state: JobState
    pilot_id: str
    exit_code: int = 0
    error_code: int = 0
    error_diag: str = ""
    log_tail: str = ""
    max_rss_mb: int = 0
    cpu_seconds: float = 0.0
    output_files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class UpdateOutcome:
    job_id: int
    attempt: int
    state: str
    error: ServiceError | None = None


@dataclass(frozen=True)
class Claim:
    """Jobs wanted by the waiting pilots of one queue that offer the same resources."""

    queue_id: str
    offer: tuple[int, int, int]  # cores, memory MB, walltime s; 0 = no limit
    pilots: list[tuple[str, str, int]]  # pilot id, node, how many jobs it takes

    @property
    def wanted(self) -> int:
        return sum(count for _, _, count in self.pilots)

    def slots(self) -> Iterator[tuple[str, str]]:
        """(pilot id, node) once for every job the pilots take, in the pilots' order."""
        for pilot_id, node, count in self.pilots:
            for _ in range(count):
                yield pilot_id, node


@dataclass
class Exchange:
    """What one dispatch round wrote and claimed."""

    outcomes: list[UpdateOutcome]  # one per update, in order
    reactivated: int  # jobs that came back activated (new attempts)
    assigned: dict[str, list[dict[str, Any]]]  # claimed jobs by pilot id


@cache
def _pg_rows_statement(full: bool, lock: bool) -> TextClause:
    """Jobs by id on PostgreSQL: one statement text whatever the number of ids (so it is planned
    once), sent with the transaction's BEGIN in one round trip (see `run_statements`)."""
    columns = "*" if full else ", ".join(str(column.name) for column in _STATE_COLUMNS)
    return text(
        f"SELECT {columns} FROM jobs WHERE job_id = ANY(CAST(:ids AS bigint[])) ORDER BY job_id"
        + (" FOR UPDATE" if lock else "")
    )


@cache
def _pg_claim_statement(offer: tuple[int, int, int], wanted: int) -> TextClause:
    """The limits are written into the statement as numbers, so the plan always walks
    the (partial) ix_jobs_dispatch and stops at the limit (a generic plan of bound limits may scan the
    table)."""
    limits = "".join(
        f" AND {column} <= {int(value)}"
        for column, value in zip(("cores", "memory_mb", "walltime_seconds"), offer, strict=True)
        if value
    )
    return text(
        "WITH locked AS ("
        " SELECT job_id, priority FROM jobs"
        f" WHERE queue = :queue AND state = 'activated'{limits}"
        f" AND EXISTS (SELECT 1 FROM queues WHERE queue_id = :queue AND status IN ({_DISPATCHING_SQL}))"
        f" ORDER BY priority DESC, job_id LIMIT {int(wanted)} FOR UPDATE SKIP LOCKED"
        "), picked AS ("
        " SELECT job_id, row_number() OVER (ORDER BY priority DESC, job_id) AS slot FROM locked"
        "), slots AS ("
        " SELECT * FROM json_to_recordset(CAST(:slots AS json)) AS s(slot bigint, pilot_id text, node text)"
        "), claimed AS ("
        " UPDATE jobs SET state = 'sent', pilot_id = slots.pilot_id, node = slots.node,"
        " state_time = :now, update_time = :now"
        " FROM picked JOIN slots ON slots.slot = picked.slot WHERE jobs.job_id = picked.job_id"
        " RETURNING jobs.*"
        "), sent_events AS ("
        f" INSERT INTO job_events ({', '.join(EVENT_COLUMNS)})"
        " SELECT job_id, attempt, 'sent', 'activated', state_time, 0, 'sent to pilot ' || pilot_id, queue, task_id"
        " FROM claimed ORDER BY priority DESC, job_id"
        ") SELECT claimed.*, (SELECT coalesce(json_agg(f ORDER BY f.file_id), '[]')"
        " FROM job_files f WHERE f.job_id = claimed.job_id) AS claimed_files FROM claimed"
    )


@dataclass
class _Changes:
    """Rows changed and events recorded in one transaction, written together at the end."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # Jobs that became activated again (new attempts): the dispatcher wants to know.
    reactivated: int = 0

    def touch(self, row: dict[str, Any]) -> None:
        self.rows[row["job_id"]] = row

    def change_state(
        self, row: dict[str, Any], new: JobState, now: datetime, reason: str = "", error_code: int = 0
    ) -> None:
        self.events.append(
            {
                "job_id": row["job_id"], "attempt": row["attempt"], "state": new.value,
                "previous_state": row["state"], "time": now, "error_code": error_code,
                "reason": reason, "queue": row["queue"], "task_id": row["task_id"],
            }
        )
        row["state"] = new.value
        row["state_time"] = now
        row["update_time"] = now
        if new == JobState.RUNNING and row.get("start_time") is None:
            row["start_time"] = now
        if new in FINAL_STATES:
            row["end_time"] = now
        self.touch(row)

    def fail(self, row: dict[str, Any], now: datetime, code: int, diag: str) -> None:
        """Fail the current attempt; a job told to stop ends cancelled instead, and a job with
        attempts left comes back activated as its next attempt."""
        row["error_code"], row["error_diag"] = code, diag
        if row["kill_requested"]:
            self.change_state(row, JobState.CANCELLED, now, f"killed ({diag})", code)
            return
        self.change_state(row, JobState.FAILED, now, diag, code)
        if row["attempt"] < row["max_attempts"]:
            row["attempt"] += 1
            row["pilot_id"], row["node"], row["end_time"], row["start_time"] = "", "", None, None
            row["heartbeat_time"] = None
            self.change_state(
                row, JobState.ACTIVATED, now,
                f"retry: attempt {row['attempt']} of {row['max_attempts']} after error {code}",
            )
            self.reactivated += 1

    def statements(self, conn: Connection) -> list[Statement | None]:
        """What writes the changed rows and the events."""
        return [update_statement(conn, jobs, "job_id", list(self.rows.values()), MUTABLE),
                *event_statements(conn, self.events)]

    def flush(self, conn: Connection) -> None:
        run_statements(conn, self.statements(conn))


_FILTER_COLUMNS: dict[str, ColumnElement[Any]] = {
    "job_id": jobs.c.job_id, "state": jobs.c.state, "queue": jobs.c.queue, "owner": jobs.c.owner,
    "vo": jobs.c.vo, "task_id": jobs.c.task_id, "priority": jobs.c.priority, "attempt": jobs.c.attempt,
    "error_code": jobs.c.error_code, "create_time": jobs.c.create_time, "update_time": jobs.c.update_time,
    "label": jobs.c.label, "pilot_id": jobs.c.pilot_id,
}


def _visible(scope: Scope) -> ColumnElement[bool]:
    return scope_condition(scope, jobs.c.owner, jobs.c.vo)


def _record_sent(conn: Connection, claimed: list[dict[str, Any]]) -> None:
    run_statements(conn, [_event_log_lock(conn), (_SENT_EVENTS, {"ids": [job["job_id"] for job in claimed]})])


_DISPATCHING_SQL = ", ".join(f"'{status}'" for status in sorted(DISPATCHING_STATUSES))


def _queue_dispatching(queue_id: str) -> ColumnElement[bool]:
    """The queue's status lets its pilots have jobs, as of the claim itself: a queue set offline
    gets no job once the change is committed, whatever a server cached."""
    return exists().where(queues.c.queue_id == queue_id, queues.c.status.in_(sorted(DISPATCHING_STATUSES)))


def _pg_claimed(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of a PostgreSQL claim, as jobs with their files, by pilot."""
    for job in rows:
        job["files"] = job.pop("claimed_files")  # the same fields as job_files rows
        job["history"] = []
    rows.sort(key=lambda job: (-job["priority"], job["job_id"]))
    return _by_pilot(rows)


def _by_pilot(claimed: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_pilot: dict[str, list[dict[str, Any]]] = {}
    for job in claimed:
        by_pilot.setdefault(job["pilot_id"], []).append(job)
    return by_pilot


def _not_yours(job_id: int, row: dict[str, Any]) -> PermissionDenied:
    return PermissionDenied(f"job {job_id} belongs to {row['owner'] or 'nobody'}: you may not act on it")


def _condition(comparison: Comparison) -> ColumnElement[bool]:
    column = _FILTER_COLUMNS[comparison.field]
    value = comparison.value
    return {
        "=": column == value, "!=": column != value, "<": column < value,
        "<=": column <= value, ">": column > value, ">=": column >= value,
    }[comparison.op]


class JobStore(Store):

    # -- reading -------------------------------------------------------------------------

    def _rows(
        self, conn: Connection, job_ids: Iterable[int], *, lock: bool, full: bool = False
    ) -> dict[int, dict[str, Any]]:
        """The jobs' rows by id: every column if `full`, else what a state change reads."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        if not self._sqlite:
            (rows,) = run_statements(conn, [(_pg_rows_statement(full, lock), {"ids": ids})])
            return {row["job_id"]: row for row in rows}
        query = (select(jobs) if full else select(*_STATE_COLUMNS)).where(jobs.c.job_id.in_(ids))
        return {r.job_id: dict(r._mapping) for r in conn.execute(query.order_by(jobs.c.job_id))}

    def _files(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        files: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        if job_ids:
            query = select(job_files).where(job_files.c.job_id.in_(job_ids)).order_by(job_files.c.file_id)
            for row in conn.execute(query):
                files[row.job_id].append(dict(row._mapping))
        return files

    def get(self, job_id: int, *, history: bool = True) -> dict[str, Any]:
        with self._engine.connect() as conn:
            row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).first()
            if row is None:
                raise NotFound(f"job {job_id} not found", resource_type="job", resource_name=f"jobs/{job_id}")
            job = dict(row._mapping)
            job["files"] = self._files(conn, [job_id])[job_id]
            job["history"] = []
            if history:
                events = conn.execute(
                    select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.cursor)
                )
                job["history"] = [dict(e._mapping) for e in events]
        return job

    def list(
        self, comparisons: list[Comparison], *, limit: int, before_job_id: int = 0, scope: Scope = EVERYTHING
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first, keyset-paginated by job id, among the jobs `scope` covers. Returns the
        page and the total matching."""
        conditions = [_visible(scope), *(_condition(c) for c in comparisons)]
        where = and_(True, *conditions)
        with self._engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(jobs).where(where)).scalar_one()
            query = select(jobs).where(where).order_by(jobs.c.job_id.desc()).limit(limit)
            if before_job_id:
                query = query.where(jobs.c.job_id < before_job_id)
            rows = [dict(r._mapping) for r in conn.execute(query)]
            files = self._files(conn, [r["job_id"] for r in rows])
        for row in rows:
            row["files"], row["history"] = files[row["job_id"]], []
        return rows, total

    # -- submitting ----------------------------------------------------------------------

    def submit(
        self, specs: list[JobSpec], *, owner: str, vo: str = "", request_id: str = ""
    ) -> list[dict[str, Any]]:
        """Store every job activated, or none. A repeated request_id returns the first call's jobs."""
        now = utc_now()
        with self._engine.begin() as conn:
            if request_id:
                earlier = conn.execute(
                    select(jobs.c.job_id).where(jobs.c.request_id == request_id).order_by(jobs.c.job_id)
                ).scalars().all()
                if earlier:
                    return self._full(conn, list(earlier))
            known = self._check_queues(conn, specs)
            rows = [
                {
                    "state": JobState.ACTIVATED.value, "queue": s.queue, "owner": owner, "vo": vo, "task_id": s.task_id,
                    "priority": s.priority, "attempt": 1, "max_attempts": s.max_attempts,
                    "command": s.command, "environment": s.environment, "cores": s.cores,
                    "memory_mb": s.memory_mb, "walltime_seconds": s.walltime_seconds, "disk_mb": s.disk_mb,
                    "label": s.label, "error_code": 0, "error_diag": "", "exit_code": 0, "log_tail": "",
                    "pilot_id": "", "node": "", "max_rss_mb": 0, "cpu_seconds": 0.0,
                    "kill_requested": False, "request_id": request_id or None,
                    "create_time": now, "update_time": now, "state_time": now,
                }
                for s in specs
            ]
            if self._sqlite:
                job_ids = list(
                    conn.execute(
                        insert(jobs).returning(jobs.c.job_id, sort_by_parameter_order=True), rows
                    ).scalars()
                )
            else:
                # One statement for the whole batch: a multi-row VALUES of thousands of rows costs
                # more to build and parse than to run.
                job_ids = new_ids(conn, jobs, "job_id", len(rows))
                for job_id, row in zip(job_ids, rows, strict=True):
                    row["job_id"] = job_id
                insert_rows(conn, jobs, rows, JOB_COLUMNS)
            file_rows = [
                {
                    "job_id": job_id, "lfn": f.lfn, "kind": f.kind,
                    "status": "ready" if f.kind == "input" else "defined",
                    "size_bytes": f.size_bytes, "adler32": f.adler32,
                    "storage_element": f.storage_element or known[spec.queue], "attempt": 0,
                }
                for job_id, spec in zip(job_ids, specs, strict=True)
                for f in spec.files
            ]
            insert_rows(conn, job_files, file_rows, FILE_COLUMNS)
            append_events(
                conn,
                [
                    {
                        "job_id": job_id, "attempt": 1, "state": JobState.ACTIVATED.value,
                        "previous_state": "", "time": now, "error_code": 0, "reason": "submitted",
                        "queue": spec.queue, "task_id": spec.task_id,
                    }
                    for job_id, spec in zip(job_ids, specs, strict=True)
                ],
            )
        # What was just written, without reading it back.
        files_by_job: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
        for file_row in file_rows:
            files_by_job[file_row["job_id"]].append(file_row)
        for job_id, row in zip(job_ids, rows, strict=True):
            row.update(job_id=job_id, start_time=None, end_time=None, heartbeat_time=None,
                       files=files_by_job[job_id], history=[])
        return rows

    def _check_queues(self, conn: Connection, specs: list[JobSpec]) -> dict[str, str]:
        """Queue id -> storage element, for every queue the specs name; refuses unknown queues
        and jobs larger than their queue takes."""
        names = {s.queue for s in specs}
        found = {r.queue_id: r for r in conn.execute(select(queues).where(queues.c.queue_id.in_(names)))}
        for index, spec in enumerate(specs):
            queue = found.get(spec.queue)
            if queue is None:
                raise NotFound(
                    f"jobs[{index}]: queue {spec.queue} not found", resource_type="queue", resource_name=spec.queue
                )
            for asked, limit, what in (
                (spec.cores, queue.max_cores, "cores"),
                (spec.memory_mb, queue.max_memory_mb, "MB of memory"),
                (spec.walltime_seconds, queue.max_walltime_seconds, "s of walltime"),
                (spec.disk_mb, queue.max_disk_mb, "MB of disk"),
            ):
                if limit and asked > limit:
                    raise InvalidArgument(
                        f"jobs[{index}] asks for {asked} {what}; queue {spec.queue} takes at most {limit}",
                        field=f"jobs[{index}].resources",
                    )
        return {name: row.storage_element for name, row in found.items()}

    def _full(self, conn: Connection, job_ids: list[int]) -> list[dict[str, Any]]:
        rows = self._rows(conn, job_ids, lock=False, full=True)
        files = self._files(conn, job_ids)
        result = []
        for job_id in job_ids:
            row = rows[job_id]
            row["files"], row["history"] = files[job_id], []
            result.append(row)
        return result

    # -- user actions --------------------------------------------------------------------

    def kill(self, job_ids: list[int], reason: str, *, scope: Scope = EVERYTHING) -> list[ActionResult]:
        now = utc_now()
        reason = reason or "killed by request"
        results: list[ActionResult] = []
        changes = _Changes()
        commands: list[dict[str, Any]] = []
        with self._engine.begin() as conn:
            rows = self._rows(conn, job_ids, lock=True)
            for job_id in job_ids:
                row = rows.get(job_id)
                if row is None:
                    results.append(ActionResult(job_id, error=NotFound(f"job {job_id} not found")))
                    continue
                if not scope.covers(row["owner"], row["vo"]):
                    results.append(ActionResult(job_id, state=row["state"], error=_not_yours(job_id, row)))
                    continue
                state = JobState(row["state"])
                if state in QUEUED_STATES:
                    changes.change_state(row, JobState.CANCELLED, now, reason)
                    results.append(ActionResult(job_id, state=row["state"]))
                elif state in PILOT_STATES:
                    if not row["kill_requested"]:
                        row["kill_requested"] = True
                        row["update_time"] = now
                        changes.touch(row)
                        commands.append(
                            {"job_id": job_id, "attempt": row["attempt"], "kind": "kill", "reason": reason,
                             "pilot_id": row["pilot_id"], "create_time": now}
                        )
                    results.append(
                        ActionResult(job_id, state=row["state"], pilot_command=(row["pilot_id"], row["attempt"]))
                    )
                else:
                    results.append(
                        ActionResult(
                            job_id, state=row["state"],
                            error=FailedPrecondition(f"job {job_id} is already {state.value}",
                                                     subject=f"jobs/{job_id}"),
                        )
                    )
            changes.flush(conn)
            if commands:
                conn.execute(insert(pilot_commands), commands)
        return results

    def reassign(self, job_ids: list[int], queue_id: str, *, scope: Scope = EVERYTHING) -> list[ActionResult]:
        now = utc_now()
        results: list[ActionResult] = []
        changes = _Changes()
        with self._engine.begin() as conn:
            if conn.execute(select(queues.c.queue_id).where(queues.c.queue_id == queue_id)).first() is None:
                raise NotFound(f"queue {queue_id} not found", resource_type="queue", resource_name=queue_id)
            rows = self._rows(conn, job_ids, lock=True)
            for job_id in job_ids:
                row = rows.get(job_id)
                if row is None:
                    results.append(ActionResult(job_id, error=NotFound(f"job {job_id} not found")))
                    continue
                if not scope.covers(row["owner"], row["vo"]):
                    results.append(ActionResult(job_id, state=row["state"], error=_not_yours(job_id, row)))
                    continue
                if JobState(row["state"]) not in QUEUED_STATES:
                    results.append(
                        ActionResult(
                            job_id, state=row["state"],
                            error=FailedPrecondition(
                                f"job {job_id} is {row['state']}: only jobs not yet sent to a pilot "
                                "can be reassigned", subject=f"jobs/{job_id}",
                            ),
                        )
                    )
                    continue
                previous = row["queue"]
                row["queue"] = queue_id
                changes.change_state(row, JobState.ACTIVATED, now, f"reassigned from {previous} to {queue_id}")
                results.append(ActionResult(job_id, state=row["state"]))
            changes.flush(conn)
            conn.execute(
                update(job_files)
                .where(job_files.c.job_id.in_([r.job_id for r in results if r.error is None]))
                .where(job_files.c.kind != "input")
                .values(storage_element=select(queues.c.storage_element)
                        .where(queues.c.queue_id == queue_id).scalar_subquery())
            )
        return results

    # -- dispatch ------------------------------------------------------------------------

    def exchange(self, updates: list[PilotUpdate], claims: list[Claim]) -> Exchange:
        """One dispatch round in one transaction: the pilots' updates are written first (in
        order), then jobs are claimed for the waiting pilots, so a pilot that ended a job and
        asked for the next in one message sees both happen together, or neither. On
        PostgreSQL the round takes three round trips: lock and read the updated jobs; write
        them, their events and every claim; commit."""
        now = utc_now()
        outcomes: list[UpdateOutcome] = []
        reactivated = 0
        writes: list[Statement | None] = []
        assigned: dict[str, list[dict[str, Any]]] = {}
        with self._engine.begin() as conn:
            if updates:
                outcomes, reactivated, writes = self._apply_updates(conn, updates, now)
            if self._sqlite:
                run_statements(conn, writes)
                for claim in claims:
                    assigned.update(self._claim_sqlite(conn, claim, now))
            else:
                # The claims write the claimed jobs' "sent" events: the event log's lock first.
                claiming = [_event_log_lock(conn)] if claims else []
                claiming += [self._pg_claim(claim, now) for claim in claims]
                results = run_statements(conn, [*writes, *claiming])
                for rows in results[len(results) - len(claims):]:
                    assigned.update(_pg_claimed(rows))
        return Exchange(outcomes, reactivated, assigned)

    def _claim_sqlite(self, conn: Connection, claim: Claim, now: datetime) -> dict[str, list[dict[str, Any]]]:
        """The best activated jobs of the claim's queue that fit its offer, sent to its pilots."""
        cores, memory_mb, walltime = claim.offer
        query = (
            select(jobs)
            # A literal, not a parameter: SQLite uses the partial dispatch index only then.
            .where(jobs.c.queue == claim.queue_id, jobs.c.state == literal_column("'activated'"))
            .where(_queue_dispatching(claim.queue_id))
            .order_by(jobs.c.priority.desc(), jobs.c.job_id)
            .limit(claim.wanted)
        )
        if cores:
            query = query.where(jobs.c.cores <= cores)
        if memory_mb:
            query = query.where(jobs.c.memory_mb <= memory_mb)
        if walltime:
            query = query.where(jobs.c.walltime_seconds <= walltime)
        claimed = [dict(r._mapping) for r in conn.execute(query)]
        if not claimed:
            return {}
        for job, (pilot_id, node) in zip(claimed, claim.slots(), strict=False):
            job.update(state=JobState.SENT.value, pilot_id=pilot_id, node=node, state_time=now, update_time=now)
        update_rows(conn, jobs, "job_id", claimed, ("state", "pilot_id", "node", "state_time", "update_time"))
        files = self._files(conn, [job["job_id"] for job in claimed])
        _record_sent(conn, claimed)
        for job in claimed:
            job["files"], job["history"] = files[job["job_id"]], []
        return _by_pilot(claimed)

    @staticmethod
    def _pg_claim(claim: Claim, now: datetime) -> Statement:
        """The claim in one statement: lock the best jobs (SKIP LOCKED, so other replicas claim
        beside us), number them, pair them with the pilots' slots, mark them sent, record their
        "sent" events, and return them with their files."""
        slots = [
            {"slot": index, "pilot_id": pilot_id, "node": node}
            for index, (pilot_id, node) in enumerate(claim.slots(), start=1)
        ]
        return (
            _pg_claim_statement(claim.offer, claim.wanted),
            {"queue": claim.queue_id, "slots": orjson.dumps(slots).decode(), "now": now},
        )

    def release(self, job_ids: list[int], reason: str) -> int:
        """Jobs sent to a pilot that never got them go back to activated, same attempt."""
        now = utc_now()
        changes = _Changes()
        with self._engine.begin() as conn:
            for row in self._rows(conn, job_ids, lock=True).values():
                if row["state"] == JobState.SENT.value:
                    row["pilot_id"], row["node"] = "", ""
                    changes.change_state(row, JobState.ACTIVATED, now, reason)
                    changes.reactivated += 1
            changes.flush(conn)
        return changes.reactivated

    def sent_to(self, pilot_id: str) -> list[tuple[int, int]]:
        """(job id, attempt) of the jobs in state sent to this pilot."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.job_id, jobs.c.attempt).where(
                    jobs.c.pilot_id == pilot_id, jobs.c.state == JobState.SENT.value
                )
            )
            return [(r.job_id, r.attempt) for r in rows]

    # -- pilot updates -------------------------------------------------------------------

    def _apply_updates(
        self, conn: Connection, updates: list[PilotUpdate], now: datetime
    ) -> tuple[list[UpdateOutcome], int, list[Statement | None]]:
        """Apply a batch of pilot updates in order. Updates for another attempt than the job's
        current one, or changes the lifecycle forbids, are refused. Returns one outcome per
        update, how many jobs came back activated, and the statements that write it all
        (for the caller to run)."""
        changes = _Changes()
        outcomes: list[UpdateOutcome] = []
        file_updates: list[dict[str, Any]] = []
        rows = self._rows(conn, (u.job_id for u in updates), lock=True)
        for u in updates:
            row = rows.get(u.job_id)
            try:
                if row is None:
                    raise NotFound(f"job {u.job_id} not found")
                self._apply_one(row, u, now, changes, file_updates)
                # A failed attempt that is retried reports its own end, not the next attempt's state.
                ended = row["state"] if row["attempt"] == u.attempt else u.state.value
                outcomes.append(UpdateOutcome(u.job_id, u.attempt, ended))
            except ServiceError as error:
                outcomes.append(UpdateOutcome(u.job_id, u.attempt, row["state"] if row else "", error))
        return outcomes, changes.reactivated, [*changes.statements(conn), _output_files_statement(conn, file_updates)]

    @staticmethod
    def _apply_one(
        row: dict[str, Any], u: PilotUpdate, now: datetime, changes: _Changes, file_updates: list[dict[str, Any]]
    ) -> None:
        job_id = row["job_id"]
        if u.attempt != row["attempt"]:
            raise FailedPrecondition(
                f"job {job_id} is at attempt {row['attempt']} ({row['state']}); "
                f"the update for attempt {u.attempt} is stale",
                subject=f"jobs/{job_id}", violation_type="STALE_ATTEMPT",
            )
        if row["pilot_id"] and u.pilot_id != row["pilot_id"]:
            raise FailedPrecondition(
                f"job {job_id} is held by pilot {row['pilot_id']}, not {u.pilot_id}",
                subject=f"jobs/{job_id}", violation_type="NOT_HOLDER",
            )
        current = JobState(row["state"])
        row["max_rss_mb"] = max(row["max_rss_mb"], u.max_rss_mb)
        row["cpu_seconds"] = max(row["cpu_seconds"], u.cpu_seconds)
        if is_heartbeat(current, u.state):
            row["heartbeat_time"] = now
            row["update_time"] = now
            changes.touch(row)
            return
        if u.state == JobState.FAILED and can_transition(current, JobState.FAILED):
            row["heartbeat_time"], row["exit_code"] = now, u.exit_code
            row["log_tail"] = u.log_tail[-_MAX_LOG_TAIL:]
            changes.fail(row, now, u.error_code, u.error_diag or f"failed with error {u.error_code}")
            return
        if u.state == JobState.FINISHED and row["kill_requested"]:
            # The payload ended on its own before the kill reached it: it still counts.
            row["kill_requested"] = False
        check_transition(job_id, current, u.state)
        row["heartbeat_time"] = now
        if u.state in FINAL_STATES:
            row["exit_code"], row["log_tail"] = u.exit_code, u.log_tail[-_MAX_LOG_TAIL:]
            row["error_code"], row["error_diag"] = u.error_code, u.error_diag
        reason = ""
        if u.state == JobState.CANCELLED:
            reason = "killed; the pilot confirmed"
        elif u.state == JobState.FINISHED:
            reason = f"finished, {len(u.output_files)} output file(s) registered"
            for f in u.output_files:
                file_updates.append(
                    {"job_id": job_id, "lfn": f["lfn"], "size_bytes": f["size_bytes"], "adler32": f["adler32"],
                     "storage_element": f["storage_element"], "attempt": row["attempt"]}
                )
        changes.change_state(row, u.state, now, reason, u.error_code)

    # -- watchdogs -----------------------------------------------------------------------

    def sweep(
        self, *, sent_timeout: float, heartbeat_timeout: float, holding_timeout: float, kill_grace: float,
        watching_since: datetime | None = None,
    ) -> tuple[dict[str, int], int]:
        """Fail what the watchdogs find (PanDA's codes 102, 100, 103) and cancel kills nobody
        confirmed. Returns counts by rule and how many jobs came back activated.

        `watching_since` is when this server started: while it was down no pilot could reach
        it, so silence is only held against a job once a whole timeout has passed since."""
        now = utc_now()
        watched = (now - watching_since).total_seconds() if watching_since else float("inf")
        rules: list[tuple[str, ColumnElement[bool], int, str]] = [
            ("sent", and_(jobs.c.state == "sent", jobs.c.state_time < now - timedelta(seconds=sent_timeout)),
             error_codes.SENT_NO_REPLY, f"sent, no reply from the pilot for {sent_timeout:.0f} s"),
            ("heartbeat",
             and_(jobs.c.state.in_(["starting", "running", "transferring"]),
                  func.coalesce(jobs.c.heartbeat_time, jobs.c.state_time)
                  < now - timedelta(seconds=heartbeat_timeout)),
             error_codes.LOST_HEARTBEAT, f"lost heartbeat (none for {heartbeat_timeout:.0f} s)"),
            ("holding",
             and_(jobs.c.state == "holding", jobs.c.state_time < now - timedelta(seconds=holding_timeout)),
             error_codes.HOLDING_TIMEOUT, f"holding for more than {holding_timeout:.0f} s"),
            ("kill",
             and_(jobs.c.kill_requested.is_(True), jobs.c.state.in_([s.value for s in PILOT_STATES]),
                  jobs.c.job_id.in_(
                      select(pilot_commands.c.job_id).where(
                          pilot_commands.c.kind == "kill",
                          pilot_commands.c.create_time < now - timedelta(seconds=kill_grace),
                      )
                  )),
             error_codes.KILL_NOT_CONFIRMED, error_codes.SERVER_ERRORS[error_codes.KILL_NOT_CONFIRMED]),
        ]
        rules = [
            rule for rule in rules
            if not (rule[0] == "sent" and watched < sent_timeout)
            and not (rule[0] == "heartbeat" and watched < heartbeat_timeout)
        ]
        counts: dict[str, int] = {}
        changes = _Changes()
        with self._engine.begin() as conn:
            if not self._try_leader_lock(conn, WATCHDOG_LOCK_KEY):
                return counts, 0
            for name, condition, code, diag in rules:
                ids = list(conn.execute(select(jobs.c.job_id).where(condition).limit(10_000)).scalars())
                rows = [r for r in self._rows(conn, ids, lock=True).values() if r["job_id"] not in changes.rows]
                for row in rows:
                    if name == "kill":
                        row["error_code"], row["error_diag"] = code, diag
                        changes.change_state(row, JobState.CANCELLED, now, diag, code)
                    else:
                        changes.fail(row, now, code, diag)
                counts[name] = len(rows)
            changes.flush(conn)
        return counts, changes.reactivated

    def _try_leader_lock(self, conn: Connection, key: int) -> bool:
        """One replica runs the watchdogs: a transaction-scoped advisory lock on PostgreSQL."""
        if self._sqlite:
            return True
        return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())

    def set_priority(
        self, priority: int, *, job_ids: Sequence[int] = (), task_id: int = 0, scope: Scope = EVERYTHING
    ) -> int:
        """New priority for the jobs not yet sent to a pilot among those named; returns how many."""
        target = jobs.c.job_id.in_(list(job_ids)) if job_ids else jobs.c.task_id == task_id
        query = (
            update(jobs)
            .where(target, jobs.c.state.in_([s.value for s in QUEUED_STATES]), _visible(scope),
                   jobs.c.priority != priority)
            .values(priority=priority, update_time=utc_now())
        )
        with self._engine.begin() as conn:
            return conn.execute(query).rowcount

    # -- events and commands -------------------------------------------------------------

    def events_after(
        self, cursor: int, *, job_ids: Sequence[int] = (), task_id: int = 0, limit: int = 500,
        scope: Scope = EVERYTHING,
    ) -> list[dict[str, Any]]:
        query = select(job_events).where(job_events.c.cursor > cursor).order_by(job_events.c.cursor).limit(limit)
        if not scope.everything:
            visible = select(jobs.c.job_id).where(_visible(scope))
            query = query.where(job_events.c.job_id.in_(visible))
        if job_ids:
            query = query.where(job_events.c.job_id.in_(list(job_ids)))
        if task_id:
            query = query.where(job_events.c.task_id == task_id)
        with self._engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def last_cursor(self) -> int:
        with self._engine.connect() as conn:
            return conn.execute(select(func.coalesce(func.max(job_events.c.cursor), 0))).scalar_one()

    def pending_commands(self, pilot_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not pilot_ids:
            return []
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(pilot_commands).where(
                    pilot_commands.c.pilot_id.in_(list(pilot_ids)), pilot_commands.c.delivered_time.is_(None)
                )
            )
            return [dict(r._mapping) for r in rows]

    def mark_delivered(self, command_ids: Sequence[int]) -> None:
        if not command_ids:
            return
        with self._engine.begin() as conn:
            conn.execute(
                update(pilot_commands)
                .where(pilot_commands.c.command_id.in_(list(command_ids)))
                .values(delivered_time=utc_now())
            )
