"""The server's job metrics: `panda_jobs{queue,state}` and
`panda_oldest_activated_job_age_seconds{queue}`, counted at scrape time at most every few
seconds, with every state of every queue there (0 when empty); and the counters of failed
attempts by error code and of the watchdogs' actions."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from panda_runtime.service.db import log_failure
from server_svc.domain.gauges import JobCensus, jobs_by_queue_and_state, oldest_activated_ages
from server_svc.domain.watchdog import WatchdogRule
from server_svc.store.queue_store import QueueStore

__all__ = ["JOB_FAILURES", "WATCHDOG_ACTIONS", "WATCHDOG_SWEEP_FAILURES", "JobCountCollector", "count_failures",
           "count_watchdog_actions", "watchdog_rules_known"]

log = logging.getLogger("panda.server")

JOB_FAILURES = Counter(
    "panda_job_failures_total",
    "Job attempts that failed, by queue and error code (the pilot's codes, the server's watchdog codes).",
    ["queue", "error_code"],
)
WATCHDOG_ACTIONS = Counter(
    "panda_watchdog_actions_total",
    "Jobs the watchdogs ended, by rule (sent, heartbeat, holding, kill) and the error code they were given.",
    ["rule", "error_code"],
)
WATCHDOG_SWEEP_FAILURES = Counter(
    "panda_watchdog_sweep_failures_total", "Watchdog sweeps that failed (the database out of reach, ...)."
)


def count_failures(failures: Iterable[tuple[tuple[str, int], int]]) -> None:
    """Adds ((queue, error code), attempts) to `panda_job_failures_total`."""
    for (queue, code), number in failures:
        JOB_FAILURES.labels(queue, str(code)).inc(number)


def watchdog_rules_known(rules: Iterable[WatchdogRule]) -> None:
    """Every rule's series exists from the start, at 0."""
    for rule in rules:
        WATCHDOG_ACTIONS.labels(rule.name, str(rule.code))


def count_watchdog_actions(rules: Iterable[WatchdogRule], ended: dict[str, int]) -> None:
    """Adds what one sweep ended (jobs by rule name) to `panda_watchdog_actions_total`."""
    for rule in rules:
        if ended.get(rule.name):
            WATCHDOG_ACTIONS.labels(rule.name, str(rule.code)).inc(ended[rule.name])


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("panda_jobs", "Jobs by queue and state: every state of every queue, 0 when none.",
                          labels=["queue", "state"]),
        GaugeMetricFamily("panda_oldest_activated_job_age_seconds",
                          "Seconds since the oldest activated job of the queue became activated (waiting for a "
                          "pilot); 0 when the queue has none.", labels=["queue"]),
    )


class JobCountCollector(Collector):
    def __init__(self, queues: QueueStore, max_age: float = 5.0) -> None:
        self._queues = queues
        self._max_age = max_age
        self._cached = JobCensus()
        self._time = 0.0

    def describe(self) -> Iterator[Metric]:
        # Registration asks for names only, so no counting happens before the first scrape.
        yield from _families()

    def collect(self) -> Iterator[Metric]:
        if time.monotonic() - self._time > self._max_age:
            try:
                self._cached = self._queues.census()
                self._time = time.monotonic()
            except Exception as error:
                log_failure(log, "counting jobs for the metrics failed", error)
        jobs, ages = _families()
        for queue, state, count in jobs_by_queue_and_state(self._cached):
            jobs.add_metric([queue, state], count)
        for queue, seconds in oldest_activated_ages(self._cached, datetime.now(UTC)):
            ages.add_metric([queue], seconds)
        yield jobs
        yield ages
