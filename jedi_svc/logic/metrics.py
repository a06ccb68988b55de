"""JEDI's gauges read at scrape time: `panda_tasks{state}`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jedi_svc.store.task_store import TaskStore
from panda_runtime.service.db import log_failure

__all__ = ["TaskCountCollector"]

log = logging.getLogger("panda.jedi")


class TaskCountCollector(Collector):
    """`panda_tasks{state}`, read at scrape time at most every few seconds."""

    def __init__(self, store: TaskStore, max_age: float = 5.0) -> None:
        self._store = store
        self._max_age = max_age
        self._cached: dict[str, int] = {}
        self._time = 0.0

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("panda_tasks", "Tasks by state.", labels=["state"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if time.monotonic() - self._time > self._max_age:
            try:
                self._cached = self._store.count_by_state()
                self._time = time.monotonic()
            except Exception as error:
                log_failure(log, "counting tasks for the metrics failed", error)
        family = GaugeMetricFamily("panda_tasks", "Tasks by state.", labels=["state"])
        for state, count in sorted(self._cached.items()):
            family.add_metric([state], count)
        yield family
