"""The one interface every resource plugin implements: submit, check, kill, clean.

Calls are synchronous (a plugin runs a command or a library's blocking call) and batched: the
agents hand a plugin every worker of a queue at once, from a thread, so one slow batch system
never stalls another queue's agents. A plugin reports each worker's outcome; it raises only when
the whole call failed (the batch system did not answer), and then the agent tries again next
cycle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from harvester_svc.domain.workers import BatchReport, SubmitOutcome, SubmittedWorker, WorkerSpec

__all__ = ["PluginError", "ResourcePlugin"]


class PluginError(Exception):
    """The batch system could not be reached or refused the whole call; the message says why."""


class ResourcePlugin(Protocol):
    # The name queue configurations use ("local", "slurm", "htcondor", "kubernetes").
    name: str

    def submit(self, workers: Sequence[WorkerSpec]) -> list[SubmitOutcome]:
        """Submit each worker; one outcome per worker, in order."""
        ...

    def check(self, workers: Sequence[SubmittedWorker]) -> list[BatchReport]:
        """The batch system's word on each worker. A worker it no longer knows is MISSED."""
        ...

    def kill(self, workers: Sequence[SubmittedWorker]) -> list[str]:
        """Stop each worker; one error message per worker, empty when it was stopped or already gone."""
        ...

    def clean(self, workers: Sequence[SubmittedWorker]) -> None:
        """Remove what each ended worker left (batch files, its access point)."""
        ...
