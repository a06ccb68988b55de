"""The jobs a pilot holds, in the three places a job can be: assigned and not yet started,
running, and ended with its final update not yet acknowledged."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from pilot_agent.job_runner import JobKey, JobRunner
from pilot_agent.stream import PendingFinal

__all__ = ["Holdings"]


@dataclass
class Holdings:
    queued: deque[job_pb2.Job] = field(default_factory=deque)
    running: dict[JobKey, JobRunner] = field(default_factory=dict)
    unacknowledged: dict[JobKey, PendingFinal] = field(default_factory=dict)

    def holds(self, key: JobKey) -> bool:
        return (
            key in self.running
            or key in self.unacknowledged
            or any((job.job_id, job.attempt) == key for job in self.queued)
        )

    def held_jobs(self) -> list[dispatch_pb2.HeldJob]:
        """Every job held, once, as a Hello names them after a reconnect."""
        keys = [(job.job_id, job.attempt) for job in self.queued]
        keys += list(self.running) + list(self.unacknowledged)
        return [dispatch_pb2.HeldJob(job_id=job_id, attempt=attempt) for job_id, attempt in dict.fromkeys(keys)]

    def take_queued(self, key: JobKey) -> job_pb2.Job | None:
        """The queued job of `key`, no longer queued; None if it is not queued."""
        for job in self.queued:
            if (job.job_id, job.attempt) == key:
                self.queued.remove(job)
                return job
        return None

    def drop(self, key: JobKey, why: str) -> bool:
        """The job is no longer this pilot's: forget it wherever it is (a running payload is
        abandoned). Whether it was held."""
        held = self.holds(key)
        self.unacknowledged.pop(key, None)
        self.take_queued(key)
        runner = self.running.get(key)
        if runner is not None:
            runner.abandon(why)
        return held
