"""`panda_jobs{queue,state}` for Prometheus, counted at scrape time at most every few seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from panda_runtime.service.db import log_failure
from server_svc.store.queue_store import QueueStore

__all__ = ["JobCountCollector"]

log = logging.getLogger("panda.server")


def _family() -> GaugeMetricFamily:
    return GaugeMetricFamily("panda_jobs", "Jobs by queue and state.", labels=["queue", "state"])


class JobCountCollector(Collector):
    def __init__(self, queues: QueueStore, max_age: float = 5.0) -> None:
        self._queues = queues
        self._max_age = max_age
        self._cached: dict[tuple[str, str], int] = {}
        self._time = 0.0

    def describe(self) -> Iterator[Metric]:
        # Registration asks for names only, so no counting happens before the first scrape.
        yield _family()

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._time > self._max_age:
            try:
                self._cached = self._queues.job_counts()
                self._time = time.monotonic()
            except Exception as error:
                log_failure(log, "counting jobs for the metrics failed", error)
        family = _family()
        for (queue, state), count in sorted(self._cached.items()):
            family.add_metric([queue, state], count)
        yield family
