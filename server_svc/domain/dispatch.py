"""Handing jobs to pilots: what a pilot offers and asks for, what a claim of jobs is, which
updates are acknowledged, what goes back down a pilot's stream, and the release of jobs a
pilot never got."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from panda_runtime.service.errors import ServiceError
from server_svc.domain.jobs import Change, Job, JobRecord, change_state
from server_svc.domain.pilot_updates import UpdateOutcome
from server_svc.domain.states import FINAL_STATES, JobState

__all__ = ["Acknowledgements", "Assignment", "Claim", "JobRequest", "Offer", "PilotHello", "UpdateAck",
           "acknowledgement", "dispatch_latency", "release"]


class Offer(NamedTuple):
    """The resources a pilot offers one job; 0 = no limit."""

    cores: int
    memory_mb: int
    walltime_seconds: int

    def updated_by(self, offer: Offer) -> Offer:
        """A new offer replaces what it states; what it leaves at 0 stays as it was."""
        return Offer(offer.cores or self.cores, offer.memory_mb or self.memory_mb,
                     offer.walltime_seconds or self.walltime_seconds)


@dataclass(frozen=True, slots=True)
class PilotHello:
    """A pilot opening its stream: who it is (its issued or resumed id, and who its token says
    it is: the subject, and the queues it names, "*" for any), where, what it offers, the jobs
    it still holds."""

    pilot_id: str
    queue: str
    node: str
    offer: Offer
    held_jobs: frozenset[int]
    subject: str
    queues: frozenset[str]
    worker_id: str = ""  # the harvester worker the pilot runs in, if it says


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A pilot asking for `count` jobs from now on (0 withdraws what it asked), maybe with a
    new offer."""

    count: int
    offer: Offer | None = None


@dataclass(slots=True)
class UpdateAck:
    """The answer to a pilot's update: the message it came in (`seq`), the state its attempt
    is in, or why it was refused."""

    seq: int
    job_id: int
    attempt: int
    state: JobState | None
    error: ServiceError | None = None


@dataclass(slots=True)
class Assignment:
    """Jobs for a pilot, with the acknowledgements that were waiting for it."""

    jobs: list[JobRecord]
    acks: list[UpdateAck]


@dataclass(slots=True)
class Acknowledgements:
    """Acknowledgements sent alone (no job came with them)."""

    acks: list[UpdateAck]


@dataclass(frozen=True, slots=True)
class Claim:
    """Jobs wanted by the waiting pilots of one queue that offer the same resources."""

    queue_id: str
    offer: Offer
    pilots: list[tuple[str, str, int]]  # pilot id, node, how many jobs it takes
    # The harvester worker of each pilot that named one, by pilot id: its jobs are related to it.
    workers: Mapping[str, str] = field(default_factory=dict)

    @property
    def wanted(self) -> int:
        return sum(count for _, _, count in self.pilots)

    def slots(self) -> Iterator[tuple[str, str]]:
        """(pilot id, node) once for every job the pilots take, in the pilots' order: the best
        job claimed goes to the first slot."""
        for pilot_id, node, count in self.pilots:
            for _ in range(count):
                yield pilot_id, node


def acknowledgement(seq: int, outcome: UpdateOutcome) -> UpdateAck | None:
    """Refusals and ends of attempts are acknowledged (the pilot then forgets the job);
    progress and heartbeats are not, one by one."""
    if outcome.error is None and outcome.state not in FINAL_STATES:
        return None
    return UpdateAck(seq, outcome.job_id, outcome.attempt, outcome.state, outcome.error)


def release(job: Job, reason: str, now: datetime) -> Change | None:
    """A job sent to a pilot that never got it (the pilot left or reconnected without it, or
    its stream closed) goes back to activated, same attempt; a job the pilot reported on
    since stays as it is."""
    if job.state is not JobState.SENT:
        return None
    job.pilot_id, job.node = "", ""
    return Change([change_state(job, JobState.ACTIVATED, now, reason)], reactivated=True)


def dispatch_latency(activated_at: float, asked_at: float, sent_at: float) -> float:
    """How long a job waited for a pilot that wanted it, in seconds: from the later of the job
    becoming activated (ready to go) and the pilot asking for work, to the job being sent to the
    pilot. A pilot's idle wait for work that did not exist yet is not dispatch latency, nor is a
    job's wait for a pilot that had not asked. Never below 0 (two replicas' clocks may differ)."""
    return max(0.0, sent_at - max(activated_at, asked_at))
