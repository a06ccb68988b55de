"""Limits an operator sets on a queue at run time (SetQueueLimits), over its configuration."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from harvester_svc.domain.queue_config import QueueConfig, QueueStatus

__all__ = ["LIMIT_NAMES", "with_limits"]

# The limits a command may set, by their configuration names.
LIMIT_NAMES = ("maxWorkers", "nQueueLimitWorker", "maxNewWorkersPerCycle", "nQueueLimitJob", "online")


def with_limits(config: QueueConfig, limits: Mapping[str, object]) -> QueueConfig:
    """`config` with these limits; ValueError saying which one is wrong (the configuration's rules)."""
    unknown = sorted(set(limits) - set(LIMIT_NAMES))
    if unknown:
        raise ValueError(f"unknown limit {unknown[0]!r} (known: {', '.join(LIMIT_NAMES)})")
    changes: dict[str, object] = {}
    for name, field in (("maxWorkers", "max_workers"), ("nQueueLimitWorker", "n_queue_limit_worker"),
                        ("maxNewWorkersPerCycle", "max_new_workers_per_cycle"),
                        ("nQueueLimitJob", "n_queue_limit_job")):
        if name in limits:
            value = limits[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: {value!r} is not a count (an integer, 0 or more)")
            changes[field] = value
    if "online" in limits:
        changes["status"] = QueueStatus.ONLINE if limits["online"] else QueueStatus.OFFLINE
    updated = dataclasses.replace(config, **changes)  # type: ignore[arg-type]
    if updated.n_queue_limit_worker is not None and updated.n_queue_limit_worker > updated.max_workers:
        raise ValueError(f"nQueueLimitWorker ({updated.n_queue_limit_worker}) is more than maxWorkers "
                         f"({updated.max_workers})")
    if updated.max_new_workers_per_cycle > updated.max_workers:
        raise ValueError(f"maxNewWorkersPerCycle ({updated.max_new_workers_per_cycle}) is more than maxWorkers "
                         f"({updated.max_workers})")
    if updated.n_queue_limit_job is not None and "nQueueLimitJob" in limits and updated.map_type == "NoJob":
        raise ValueError("nQueueLimitJob: only a push queue (OneToOne, ManyToOne) fetches jobs ahead")
    return updated
