"""What the server's metrics say about jobs, as rules with no I/O: every state of every queue
(0 when no job is in it, so a series never vanishes when its last job leaves), the age of each
queue's oldest activated job, and the failed attempts of a batch of events by error code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from server_svc.domain.jobs import JobEvent
from server_svc.domain.states import JobState

__all__ = ["JobCensus", "failed_attempts", "jobs_by_queue_and_state", "oldest_activated_ages"]


@dataclass(frozen=True, slots=True)
class JobCensus:
    """The configured queues, how many jobs each (queue, state) holds, and when the oldest
    activated job of each queue that has one became activated."""

    queues: frozenset[str] = frozenset()
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    oldest_activated: Mapping[str, datetime] = field(default_factory=dict)

    @property
    def all_queues(self) -> list[str]:
        """The configured queues and any other that still holds jobs (one deleted since)."""
        return sorted(self.queues | {queue for queue, _ in self.counts} | set(self.oldest_activated))


def jobs_by_queue_and_state(census: JobCensus) -> list[tuple[str, str, int]]:
    """(queue, state, jobs) for every state of the job state machine in every queue, 0 where
    there are none, and for any other state a queue's jobs are found in."""
    rows = [(queue, state.value, census.counts.get((queue, state.value), 0))
            for queue in census.all_queues for state in JobState]
    known = {state.value for state in JobState}
    rows += [(queue, state, count) for (queue, state), count in sorted(census.counts.items()) if state not in known]
    return rows


def oldest_activated_ages(census: JobCensus, now: datetime) -> list[tuple[str, float]]:
    """(queue, seconds) since the oldest activated job of each queue became activated: 0 for a
    queue with no activated job, never below 0 (clocks of two replicas may disagree)."""
    ages = []
    for queue in census.all_queues:
        since = census.oldest_activated.get(queue)
        ages.append((queue, max(0.0, (now - since).total_seconds()) if since is not None else 0.0))
    return ages


def failed_attempts(events: Iterable[JobEvent]) -> Counter[tuple[str, int]]:
    """How many attempts failed, by (queue, error code), among the events of one change."""
    return Counter((event.queue, event.error_code) for event in events if event.state is JobState.FAILED)
