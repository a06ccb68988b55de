"""The rules of panda.harvester.v1's fields, shared by the server (which keeps the registry of
instances, queue configurations, workers and commands) and harvester (which reports to it):
worker states and which of them are final, the plugins, the ids, and the limits of a queue.
Names are the enums' value names without their prefix, in lower case (`STATE_RUNNING` is
`running`, `MAP_TYPE_ONE_TO_ONE` is `one_to_one`). Every length is that of the column the value
is stored in."""

from __future__ import annotations

import re
from collections.abc import Mapping

from panda_runtime.contracts.rules import INT32_MAX, Violation, check_name, check_text

__all__ = [
    "ALIVE_AFTER_HEARTBEATS",
    "COMMAND_KINDS",
    "COMMAND_STATES",
    "FINAL_WORKER_STATES",
    "HARVESTER_ID",
    "LIVE_WORKER_STATES",
    "MAP_TYPES",
    "MAX_BATCH_ID_LENGTH",
    "MAX_COMMAND_RESULT_LENGTH",
    "MAX_HOST_LENGTH",
    "MAX_PARAMETER_NAME_LENGTH",
    "MAX_PARAMETER_VALUE_LENGTH",
    "MAX_PLUGIN_PARAMETERS",
    "MAX_QUEUE_CONFIGS",
    "MAX_REPORTED_WORKERS",
    "MAX_VERSION_LENGTH",
    "MAX_WORKER_ERROR_LENGTH",
    "MAX_WORKER_ID_LENGTH",
    "MESSENGERS",
    "OPEN_COMMAND_STATES",
    "PLUGINS",
    "PUSH_MAP_TYPES",
    "QUEUED_WORKER_STATES",
    "QUEUE_LIMITS",
    "WORKER_STATES",
    "check_harvester_id",
    "check_queue_limits",
    "check_worker_id",
]

# Harvester's worker states, in their lifecycle's order.
WORKER_STATES = ("submitted", "ready", "running", "idle", "finished", "failed", "cancelled", "missed")
# A worker in one of these stays there: a report that would move it out is refused.
FINAL_WORKER_STATES = frozenset({"finished", "failed", "cancelled", "missed"})
LIVE_WORKER_STATES = frozenset(WORKER_STATES) - FINAL_WORKER_STATES
# Waiting in the batch system: what a queue's queue_limit_workers bounds.
QUEUED_WORKER_STATES = frozenset({"submitted", "ready"})

PLUGINS = ("local", "slurm", "htcondor", "kubernetes")
MAP_TYPES = ("pull", "one_to_one", "many_to_one")
# Harvester fetches the jobs and hands them to the workers (no pilot asks the server).
PUSH_MAP_TYPES = frozenset({"one_to_one", "many_to_one"})
MESSENGERS = ("grpc", "relay", "shared_files")

COMMAND_KINDS = ("kill_worker", "set_queue_limits")
COMMAND_STATES = ("pending", "delivered", "done", "failed")
# Not yet done: what a heartbeat hands the instance (again, until it says it is done).
OPEN_COMMAND_STATES = frozenset({"pending", "delivered"})

# An instance is alive while its last heartbeat is at most this many heartbeat intervals old.
ALIVE_AFTER_HEARTBEATS = 3

HARVESTER_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MAX_WORKER_ID_LENGTH = 128
_WORKER_SUFFIX = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_BATCH_ID_LENGTH = 256
MAX_WORKER_ERROR_LENGTH = 4096
MAX_VERSION_LENGTH = 64
MAX_HOST_LENGTH = 256
MAX_COMMAND_RESULT_LENGTH = 4096
MAX_PLUGIN_PARAMETERS = 64
MAX_PARAMETER_NAME_LENGTH = 64
MAX_PARAMETER_VALUE_LENGTH = 4096
# Per call: workers in one report, queues one instance provisions.
MAX_REPORTED_WORKERS = 1000
MAX_QUEUE_CONFIGS = 10_000

# A queue's limits (the fields of QueueLimits but `online`), each a count: 0 or more.
QUEUE_LIMITS = ("max_workers", "queue_limit_workers", "max_new_workers_per_cycle", "queue_limit_jobs")


def check_harvester_id(value: str, field: str = "harvester_id") -> str:
    if not value:
        raise Violation(field, f"{field} is required")
    return check_name(value, field, HARVESTER_ID, "a harvester id (letters, digits, '_', '-', '.'; at most 64)")


def check_worker_id(worker_id: str, harvester_id: str, field: str = "worker_id") -> str:
    """A worker id of the instance `harvester_id`: "{harvester_id}-" and a suffix of letters,
    digits, '_', '-' and '.' (harvester numbers its workers), at most MAX_WORKER_ID_LENGTH."""
    check_text(worker_id, field, max_length=MAX_WORKER_ID_LENGTH, required=True, what="worker_id")
    prefix = f"{harvester_id}-"
    if not worker_id.startswith(prefix):
        raise Violation(field, f"worker {worker_id!r} is not of harvester {harvester_id}: its id must start "
                               f"with {prefix!r}")
    if not _WORKER_SUFFIX.fullmatch(worker_id[len(prefix):]):
        raise Violation(field, f"worker {worker_id!r}: after {prefix!r} only letters, digits, '_', '-' and '.'")
    return worker_id


def check_queue_limits(limits: Mapping[str, int], field: str) -> None:
    """A queue's limits (names of QUEUE_LIMITS; those not given are not checked): each between 0
    and 2^31 - 1, and queue_limit_workers at most max_workers (no more may wait than may live)."""
    for name in QUEUE_LIMITS:
        value = limits.get(name)
        if value is not None and not 0 <= value <= INT32_MAX:
            raise Violation(f"{field}.{name}", f"{name} must be between 0 and {INT32_MAX}, not {value}")
    waiting, most = limits.get("queue_limit_workers"), limits.get("max_workers")
    if waiting is not None and most is not None and waiting > most:
        raise Violation(f"{field}.queue_limit_workers",
                        f"queue_limit_workers ({waiting}) must not exceed max_workers ({most})")
