"""The watchdogs' queries: the jobs each rule finds overdue, ended in one transaction by the
one server that holds the watchdogs' lock."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, delete, exists, func, select, text
from sqlalchemy.sql import ColumnElement

from panda_runtime.service.db import Store
from server_svc.domain.gauges import failed_attempts
from server_svc.domain.jobs import JobChanges
from server_svc.domain.watchdog import Clock, WatchdogRule, apply_rule
from server_svc.store.job_rows import read_jobs, write_changes
from server_svc.store.tables import jobs, pilot_commands, pilots

__all__ = ["WATCHDOG_LOCK_KEY", "Sweep", "WatchdogStore"]

# PostgreSQL advisory lock held by the server that runs the watchdogs.
WATCHDOG_LOCK_KEY = 0x70616E6461  # "panda"
_MOST_PER_RULE = 10_000


def _overdue(rule: WatchdogRule, now: datetime) -> ColumnElement[bool]:
    """The rule's condition (`WatchdogRule.is_overdue`) in SQL."""
    states = sorted(state.value for state in rule.states)
    in_state = jobs.c.state == states[0] if len(states) == 1 else jobs.c.state.in_(states)
    cutoff = rule.cutoff(now)
    if rule.clock is Clock.STATE_ENTERED:
        return and_(in_state, jobs.c.state_time < cutoff)
    if rule.clock is Clock.LAST_HEARTBEAT:
        overdue = and_(in_state, func.coalesce(jobs.c.heartbeat_time, jobs.c.state_time) < cutoff)
        if rule.spares_heard_pilots:
            heard = exists().where(pilots.c.pilot_id == jobs.c.pilot_id, pilots.c.last_seen >= cutoff)
            overdue = and_(overdue, ~heard)
        return overdue
    kill_asked_before = select(pilot_commands.c.job_id).where(
        pilot_commands.c.kind == "kill", pilot_commands.c.create_time < cutoff
    )
    return and_(jobs.c.kill_requested.is_(True), in_state, jobs.c.job_id.in_(kill_asked_before))


@dataclass(slots=True)
class Sweep:
    """What one sweep did: jobs ended by rule name, jobs that came back activated, and attempts
    failed by (queue, error code)."""

    ended: dict[str, int]
    reactivated: int
    failures: Counter[tuple[str, int]] = field(default_factory=Counter)


class WatchdogStore(Store):
    def sweep(
        self, rules: Sequence[WatchdogRule], now: datetime, forget_pilots_before: datetime
    ) -> Sweep:
        """End what each rule finds overdue as of `now`, as the rule says (a job found by an
        earlier rule is left to it), and forget the pilot identities not heard of since
        `forget_pilots_before`. Returns how many jobs each rule ended, how many came back
        activated and the attempts that failed; nothing if another server holds the watchdogs'
        lock."""
        counts: dict[str, int] = {}
        changes = JobChanges()
        with self._engine.begin() as conn:
            if not self._leader(conn):
                return Sweep(counts, 0)
            for rule in rules:
                query = select(jobs.c.job_id).where(_overdue(rule, now)).limit(_MOST_PER_RULE)
                ids = list(conn.execute(query).scalars())
                found = [job for job in read_jobs(conn, ids, lock=True).values() if job.job_id not in changes.jobs]
                for job in found:
                    changes.add(job, apply_rule(job, rule, now))
                counts[rule.name] = len(found)
            write_changes(conn, changes)
            conn.execute(delete(pilots).where(pilots.c.last_seen < forget_pilots_before))
        return Sweep(counts, changes.reactivated, failed_attempts(changes.events))

    def _leader(self, conn: Connection) -> bool:
        """One server runs the watchdogs: a transaction-scoped advisory lock on PostgreSQL."""
        if self._sqlite:
            return True
        return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": WATCHDOG_LOCK_KEY}).scalar())
