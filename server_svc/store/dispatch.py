"""The dispatch exchange: one transaction a round that writes the pilots' updates and claims
jobs for the waiting pilots; and the release of jobs sent to pilots that never got them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import Connection, TextClause, bindparam, exists, insert, literal, literal_column, select, text

from panda_runtime.service.bulk import Statement, run_statements, update_rows
from panda_runtime.service.db import Store, aware
from panda_runtime.service.db import now as utc_now
from server_svc.domain.dispatch import Claim, release
from server_svc.domain.gauges import failed_attempts
from server_svc.domain.jobs import JobChanges, JobRecord
from server_svc.domain.pilot_updates import PilotUpdate, UpdateOutcome, apply_pilot_updates
from server_svc.domain.queues import DISPATCHING_STATUSES
from server_svc.domain.states import JobState
from server_svc.store.events import EVENT_COLUMNS, event_log_lock
from server_svc.store.job_rows import (
    change_statements,
    file_from_row,
    read_files,
    read_jobs,
    record_from_row,
    write_changes,
)
from server_svc.store.tables import job_events, jobs, queues

__all__ = ["DispatchStore", "Exchange"]


@dataclass(slots=True)
class Exchange:
    """What one dispatch round wrote and claimed."""

    outcomes: list[UpdateOutcome]  # one per update, in order
    reactivated: int  # jobs that came back activated (new attempts)
    assigned: dict[str, list[JobRecord]]  # claimed jobs by pilot id
    # When each claimed job had become activated (its state time before the claim), by job id.
    activated_at: dict[int, datetime] = field(default_factory=dict)
    # Attempts the updates failed, by (queue, error code).
    failures: Counter[tuple[str, int]] = field(default_factory=Counter)


_DISPATCHING_SQL = ", ".join(f"'{status}'" for status in sorted(DISPATCHING_STATUSES))


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
        " SELECT job_id, priority, state_time FROM jobs"
        f" WHERE queue = :queue AND state = 'activated'{limits}"
        f" AND EXISTS (SELECT 1 FROM queues WHERE queue_id = :queue AND status IN ({_DISPATCHING_SQL}))"
        f" ORDER BY priority DESC, job_id LIMIT {int(wanted)} FOR UPDATE SKIP LOCKED"
        "), picked AS ("
        " SELECT job_id, state_time AS activated_at, row_number() OVER (ORDER BY priority DESC, job_id) AS slot"
        " FROM locked"
        "), slots AS ("
        " SELECT * FROM json_to_recordset(CAST(:slots AS json))"
        " AS s(slot bigint, pilot_id text, node text, worker_id text)"
        "), claimed AS ("
        " UPDATE jobs SET state = 'sent', pilot_id = slots.pilot_id, node = slots.node, worker_id = slots.worker_id,"
        " state_time = :now, update_time = :now"
        " FROM picked JOIN slots ON slots.slot = picked.slot WHERE jobs.job_id = picked.job_id"
        " RETURNING jobs.*, picked.activated_at"
        "), sent_events AS ("
        f" INSERT INTO job_events ({', '.join(EVENT_COLUMNS)})"
        " SELECT job_id, attempt, 'sent', 'activated', state_time, 0, 'sent to pilot ' || pilot_id, queue, task_id"
        " FROM claimed ORDER BY priority DESC, job_id"
        ") SELECT claimed.*, (SELECT coalesce(json_agg(f ORDER BY f.file_id), '[]')"
        " FROM job_files f WHERE f.job_id = claimed.job_id) AS claimed_files FROM claimed"
    )


# The "sent" events of claimed jobs, written from their rows by the database itself (SQLite).
_SENT_EVENTS = insert(job_events).from_select(
    EVENT_COLUMNS,
    select(
        jobs.c.job_id, jobs.c.attempt, literal(JobState.SENT.value), literal(JobState.ACTIVATED.value),
        jobs.c.state_time, literal(0), literal("sent to pilot ") + jobs.c.pilot_id, jobs.c.queue, jobs.c.task_id,
    )
    .where(jobs.c.job_id.in_(bindparam("ids", expanding=True)))
    .order_by(jobs.c.priority.desc(), jobs.c.job_id),
)


# The storage elements' URLs, read in the claims' round trip: each claimed file is sent with its
# element's URL (a handful of rows; a join per file would cost every claim).
_ELEMENT_URLS = text("SELECT storage_element_id, url FROM storage_elements")


def _pg_claimed(
    rows: list[dict[str, Any]], urls: dict[str, str], activated_at: dict[int, datetime]
) -> dict[str, list[JobRecord]]:
    """The rows of a PostgreSQL claim, as jobs with their files (each with its element's URL),
    by pilot; when each had become activated goes into `activated_at`."""
    for row in rows:
        activated_at[row["job_id"]] = aware(row.pop("activated_at")) or utc_now()
    claimed = [record_from_row(row, [file_from_row(f) for f in row.pop("claimed_files")]) for row in rows]
    for job in claimed:
        for file in job.files:
            file.storage_url = urls.get(file.storage_element, "")
    claimed.sort(key=lambda job: (-job.priority, job.job_id))
    return _by_pilot(claimed)


def _by_pilot(claimed: list[JobRecord]) -> dict[str, list[JobRecord]]:
    by_pilot: dict[str, list[JobRecord]] = {}
    for job in claimed:
        by_pilot.setdefault(job.pilot_id, []).append(job)
    return by_pilot


class DispatchStore(Store):
    def exchange(self, updates: list[PilotUpdate], claims: list[Claim]) -> Exchange:
        """One dispatch round in one transaction: the pilots' updates are written first (in
        order), then jobs are claimed for the waiting pilots, so a pilot that ended a job and
        asked for the next in one message sees both happen together, or neither. On
        PostgreSQL the round takes three round trips: lock and read the updated jobs; write
        them, their events and every claim; commit."""
        now = utc_now()
        exchange = Exchange([], 0, {})
        writes: list[Statement | None] = []
        assigned = exchange.assigned
        with self._engine.begin() as conn:
            if updates:
                held = read_jobs(conn, (u.job_id for u in updates), lock=True)
                applied = apply_pilot_updates(held, updates, now)
                exchange.outcomes, exchange.reactivated = applied.outcomes, applied.changes.reactivated
                exchange.failures = failed_attempts(applied.changes.events)
                writes = change_statements(conn, applied.changes)
            if self._sqlite:
                run_statements(conn, writes)
                for claim in claims:
                    assigned.update(self._claim_sqlite(conn, claim, now, exchange.activated_at))
            else:
                # The claims write the claimed jobs' "sent" events: the event log's lock first.
                claiming: list[Statement | None] = [event_log_lock(conn), (_ELEMENT_URLS, {})] if claims else []
                claiming += [self._pg_claim(claim, now) for claim in claims]
                results = run_statements(conn, [*writes, *claiming])
                if claims:
                    urls = {row["storage_element_id"]: row["url"] for row in results[-len(claims) - 1]}
                    for rows in results[len(results) - len(claims):]:
                        assigned.update(_pg_claimed(rows, urls, exchange.activated_at))
        return exchange

    def _claim_sqlite(
        self, conn: Connection, claim: Claim, now: datetime, activated_at: dict[int, datetime]
    ) -> dict[str, list[JobRecord]]:
        """The best activated jobs of the claim's queue that fit its offer, sent to its pilots
        (when each had become activated goes into `activated_at`)."""
        cores, memory_mb, walltime = claim.offer
        query = (
            select(jobs)
            # A literal, not a parameter: SQLite uses the partial dispatch index only then.
            .where(jobs.c.queue == claim.queue_id, jobs.c.state == literal_column("'activated'"))
            # The queue's status as of the claim itself: a queue set offline gets no job once the
            # change is committed, whatever a server cached.
            .where(exists().where(queues.c.queue_id == claim.queue_id,
                                  queues.c.status.in_(sorted(DISPATCHING_STATUSES))))
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
            activated_at[job["job_id"]] = aware(job["state_time"]) or now
            job.update(state=JobState.SENT.value, pilot_id=pilot_id, node=node, state_time=now, update_time=now,
                       worker_id=claim.workers.get(pilot_id))
        update_rows(conn, jobs, "job_id", claimed,
                    ("state", "pilot_id", "node", "worker_id", "state_time", "update_time"))
        job_ids = [job["job_id"] for job in claimed]
        files = read_files(conn, job_ids)
        run_statements(conn, [event_log_lock(conn), (_SENT_EVENTS, {"ids": job_ids})])
        return _by_pilot([record_from_row(job, files[job["job_id"]]) for job in claimed])

    @staticmethod
    def _pg_claim(claim: Claim, now: datetime) -> Statement:
        """The claim in one statement: lock the best jobs (SKIP LOCKED, so other replicas claim
        beside us), number them, pair them with the pilots' slots, mark them sent, record their
        "sent" events, and return them with their files."""
        slots = [
            {"slot": index, "pilot_id": pilot_id, "node": node, "worker_id": claim.workers.get(pilot_id)}
            for index, (pilot_id, node) in enumerate(claim.slots(), start=1)
        ]
        return (
            _pg_claim_statement(claim.offer, claim.wanted),
            {"queue": claim.queue_id, "slots": orjson.dumps(slots).decode(), "now": now},
        )

    def release(self, job_ids: list[int], reason: str) -> int:
        """Jobs sent to a pilot that never got them go back to activated, same attempt (see
        `domain.dispatch.release`); returns how many did."""
        now = utc_now()
        changes = JobChanges()
        with self._engine.begin() as conn:
            for job in read_jobs(conn, job_ids, lock=True).values():
                change = release(job, reason, now)
                if change is not None:
                    changes.add(job, change)
            write_changes(conn, changes)
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
