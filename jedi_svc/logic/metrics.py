"""JEDI's gauges read at scrape time: `panda_tasks{state}`, every state there (0 when empty)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jedi_svc.domain.states import TaskState
from jedi_svc.store.task_store import TaskStore
from panda_runtime.service.db import log_failure

__all__ = ["TaskCountCollector", "tasks_by_state"]

log = logging.getLogger("panda.jedi")


class TaskCountCollector(Collector):
    """`panda_tasks{state}`, read at scrape time at most every few seconds."""

    def __init__(self, store: TaskStore, max_age: float = 5.0) -> None:
        self._store = store
        self._max_age = max_age
        self._cached: dict[str, int] = {}
        self._time = 0.0

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield _family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self._time > self._max_age:
            try:
                self._cached = self._store.count_by_state()
                self._time = time.monotonic()
            except Exception as error:
                log_failure(log, "counting tasks for the metrics failed", error)
        family = _family()
        if self._time:  # counted at least once: a zero is then a zero, not a failure to count
            for state, count in tasks_by_state(self._cached):
                family.add_metric([state], count)
        yield family


def tasks_by_state(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """(state, tasks) for every state of the task state machine, 0 where there are none, and
    for any other state tasks are found in."""
    known = [state.value for state in TaskState]
    return [(state, counts.get(state, 0)) for state in known] + sorted(
        (state, count) for state, count in counts.items() if state not in known)


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily("panda_tasks", "Tasks by state: every state of the task state machine, 0 when none.",
                             labels=["state"])
