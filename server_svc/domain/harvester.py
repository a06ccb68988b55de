"""Harvester instances as the server keeps them: who may speak for one, when one is alive, which
queues one may provision, what a queue configuration must be, the commands operators queue for
an instance and how they end, and how much work waits for a queue."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from panda_runtime.contracts import Violation
from panda_runtime.contracts import harvester as contract
from panda_runtime.contracts.rules import INT32_MAX, check_name, check_text
from panda_runtime.contracts.server import QUEUE_ID, check_reason
from panda_runtime.service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from panda_runtime.service.principals import ADMIN, Principal
from server_svc.domain.harvester_workers import Worker
from server_svc.domain.queues import DISPATCHING_STATUSES

__all__ = [
    "HarvesterCommand", "HarvesterInstance", "QueueConfig", "QueueLoad", "apply_limits", "check_instance_text",
    "check_queue_configs", "check_queues_free", "check_server_queues", "check_speaker", "complete_command", "is_alive",
    "kill_worker_command", "not_registered", "queue_online", "set_limits_command",
]

LimitValue = int | bool


@dataclass(slots=True)
class HarvesterInstance:
    """An instance as stored: it belongs to the token subject that first registered it."""

    harvester_id: str
    subject: str
    version: str
    host: str
    queues: list[str]
    register_time: datetime
    heartbeat_time: datetime
    worker_counts: dict[str, int] = field(default_factory=dict)  # live workers by state, when asked for


@dataclass(slots=True)
class QueueConfig:
    """How an instance provisions one queue; names are the columns' (map_type, messenger and the
    plugin by the contract's names)."""

    queue_id: str
    harvester_id: str
    online: bool
    map_type: str
    queue_limit_workers: int
    max_workers: int
    max_new_workers_per_cycle: int
    queue_limit_jobs: int
    jobs_per_worker: int
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    plugin: str
    plugin_parameters: dict[str, str]
    messenger: str
    worker_queued_timeout_seconds: int
    worker_heartbeat_timeout_seconds: int
    update_time: datetime
    worker_counts: dict[str, int] = field(default_factory=dict)  # live workers by state, when asked for


@dataclass(slots=True)
class HarvesterCommand:
    """A command queued for an instance; `limits` holds the QueueLimits fields given."""

    command_id: int  # 0 until stored
    harvester_id: str
    kind: str  # contract.COMMAND_KINDS
    worker_id: str
    queue_id: str
    limits: dict[str, LimitValue]
    state: str  # contract.COMMAND_STATES
    result: str
    reason: str
    issuer: str
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class QueueLoad:
    """A queue's work as the server sees it now; `largest_*` are of its activated jobs, field by
    field (0 when none waits)."""

    queue_id: str
    online: bool
    activated_jobs: int
    starting_jobs: int
    running_jobs: int
    largest_cores: int
    largest_memory_mb: int
    largest_walltime_seconds: int
    largest_disk_mb: int


# -- instances --------------------------------------------------------------------------------


def is_alive(heartbeat_time: datetime, now: datetime, heartbeat_interval_seconds: int) -> bool:
    """Heard of within ALIVE_AFTER_HEARTBEATS heartbeat intervals."""
    window = timedelta(seconds=contract.ALIVE_AFTER_HEARTBEATS * heartbeat_interval_seconds)
    return now - heartbeat_time <= window


def not_registered(harvester_id: str) -> NotFound:
    return NotFound(f"harvester instance {harvester_id} is not registered (RegisterInstance first)",
                    resource_type="harvester", resource_name=f"harvesters/{harvester_id}")


def check_speaker(instance: HarvesterInstance | None, harvester_id: str, caller: Principal, *,
                  registering: bool = False) -> None:
    """Whether `caller` may speak for the instance: its id belongs to the subject that first
    registered it (an admin may speak for any). An instance never registered is NOT_FOUND,
    unless this is its registration."""
    if instance is None:
        if registering:
            return
        raise not_registered(harvester_id)
    if instance.subject != caller.subject and not caller.has_role(ADMIN):
        raise PermissionDenied(f"harvester instance {harvester_id} belongs to {instance.subject}: "
                               f"{caller.subject} may not speak for it")


def check_instance_text(version: str, host: str) -> None:
    try:
        check_text(version, "version", max_length=contract.MAX_VERSION_LENGTH)
        check_text(host, "host", max_length=contract.MAX_HOST_LENGTH)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None


def check_queues_free(harvester_id: str, queue_ids: Sequence[str], owners: Mapping[str, HarvesterInstance],
                      now: datetime, heartbeat_interval_seconds: int) -> None:
    """A queue provisioned by another instance that is alive is not this one's to take:
    ALREADY_EXISTS naming the queue. A dead instance's queues are taken over."""
    for index, queue_id in enumerate(queue_ids):
        owner = owners.get(queue_id)
        if owner is not None and owner.harvester_id != harvester_id and is_alive(
            owner.heartbeat_time, now, heartbeat_interval_seconds
        ):
            raise AlreadyExists(
                f"queue_configs[{index}].queue_id: queue {queue_id} is provisioned by harvester {owner.harvester_id}, "
                f"alive (last heartbeat {owner.heartbeat_time.isoformat(timespec='seconds')})"
            )


# -- queue configurations ---------------------------------------------------------------------


def _check_queue_config(config: QueueConfig, where: str) -> None:
    check_name(config.queue_id, f"{where}.queue_id", QUEUE_ID, "a queue id")
    if config.map_type not in contract.MAP_TYPES:
        raise Violation(f"{where}.map_type", f"map_type is required: {', '.join(contract.MAP_TYPES)}")
    if config.messenger not in contract.MESSENGERS:
        raise Violation(f"{where}.messenger", f"messenger is required: {', '.join(contract.MESSENGERS)}")
    if config.plugin not in contract.PLUGINS:
        raise Violation(f"{where}.plugin", f"plugin must be one of {', '.join(contract.PLUGINS)}, "
                                           f"not {config.plugin[:64]!r}")
    limits = {name: getattr(config, name) for name in contract.QUEUE_LIMITS}
    contract.check_queue_limits(limits, where)
    if config.max_new_workers_per_cycle > config.max_workers:
        raise Violation(f"{where}.max_new_workers_per_cycle",
                        f"max_new_workers_per_cycle ({config.max_new_workers_per_cycle}) must not exceed max_workers "
                        f"({config.max_workers})")
    push = config.map_type in contract.PUSH_MAP_TYPES
    if config.queue_limit_jobs and not push:
        raise Violation(f"{where}.queue_limit_jobs", "queue_limit_jobs is for push queues (one_to_one, many_to_one)")
    if config.messenger == "shared_files" and not push:
        raise Violation(f"{where}.messenger", "shared_files needs a push map_type: its pilot cannot ask for a job")
    if config.map_type == "many_to_one" and config.jobs_per_worker < 2:
        raise Violation(f"{where}.jobs_per_worker", "many_to_one needs jobs_per_worker of at least 2")
    if config.map_type != "many_to_one" and config.jobs_per_worker > 1:
        raise Violation(f"{where}.jobs_per_worker", "jobs_per_worker above 1 is for many_to_one queues")
    for name in ("jobs_per_worker", "cores", "worker_queued_timeout_seconds", "worker_heartbeat_timeout_seconds"):
        if not 0 <= getattr(config, name) <= INT32_MAX:
            raise Violation(f"{where}.{name}", f"{name} must be between 0 and {INT32_MAX}")
    for name in ("memory_mb", "walltime_seconds", "disk_mb"):
        if getattr(config, name) < 0:
            raise Violation(f"{where}.resources.{name}", f"{name} must not be negative")
    if len(config.plugin_parameters) > contract.MAX_PLUGIN_PARAMETERS:
        raise Violation(f"{where}.plugin_parameters", f"at most {contract.MAX_PLUGIN_PARAMETERS} parameters")
    for name, value in sorted(config.plugin_parameters.items()):
        check_text(name, f"{where}.plugin_parameters", max_length=contract.MAX_PARAMETER_NAME_LENGTH, required=True,
                   what="a parameter's name")
        check_text(value, f"{where}.plugin_parameters[{name}]", max_length=contract.MAX_PARAMETER_VALUE_LENGTH)
        try:
            json.loads(value)
        except ValueError:
            raise Violation(f"{where}.plugin_parameters[{name}]", "a parameter's value is JSON text (a string "
                                                                  "quoted: \"\\\"gpu\\\"\")") from None


def check_queue_configs(configs: Sequence[QueueConfig]) -> None:
    """An instance's queue configurations: each well formed, each queue once. INVALID_ARGUMENT
    naming the field (`queue_configs[2].max_workers`)."""
    if len(configs) > contract.MAX_QUEUE_CONFIGS:
        raise InvalidArgument(f"queue_configs: at most {contract.MAX_QUEUE_CONFIGS}", field="queue_configs")
    seen: set[str] = set()
    for index, config in enumerate(configs):
        where = f"queue_configs[{index}]"
        try:
            _check_queue_config(config, where)
        except Violation as violation:
            raise InvalidArgument.of(violation) from None
        if config.queue_id in seen:
            raise InvalidArgument(f"{where}.queue_id: queue {config.queue_id} is listed twice",
                                  field=f"{where}.queue_id")
        seen.add(config.queue_id)


def check_server_queues(configs: Sequence[QueueConfig], server_queues: Collection[str]) -> None:
    """Each configured queue is a queue of the server (`server_queues` holds those that are)."""
    for index, config in enumerate(configs):
        if config.queue_id not in server_queues:
            where = f"queue_configs[{index}].queue_id"
            raise InvalidArgument(f"{where}: queue {config.queue_id} is not a queue of the server (an admin adds it: "
                                  "panda queue add)", field=where)


def apply_limits(config: QueueConfig, limits: Mapping[str, LimitValue]) -> QueueConfig:
    """The configuration with new limits (those given; `online` too)."""
    changed = replace(config)
    for name in contract.QUEUE_LIMITS:
        if name in limits:
            setattr(changed, name, int(limits[name]))
    if "online" in limits:
        changed.online = bool(limits["online"])
    return changed


def queue_online(status: str) -> bool:
    """Whether a queue takes new workers: while its pilots get jobs (online, test, brokeroff:
    a queue the broker no longer fills still hands out what waits for it)."""
    return status in DISPATCHING_STATUSES


# -- commands ---------------------------------------------------------------------------------


def _command(harvester_id: str, kind: str, issuer: str, now: datetime, *, worker_id: str = "", queue_id: str = "",
             limits: Mapping[str, LimitValue] | None = None, reason: str = "") -> HarvesterCommand:
    return HarvesterCommand(command_id=0, harvester_id=harvester_id, kind=kind, worker_id=worker_id,
                            queue_id=queue_id, limits=dict(limits or {}), state="pending", result="", reason=reason,
                            issuer=issuer, create_time=now, update_time=now)


def kill_worker_command(worker: Worker, reason: str, issuer: str, now: datetime) -> HarvesterCommand:
    """A kill for the worker's instance; a worker already ended is FAILED_PRECONDITION."""
    try:
        check_reason(reason)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None
    if worker.state in contract.FINAL_WORKER_STATES:
        raise FailedPrecondition(f"worker {worker.worker_id} is already {worker.state}",
                                 subject=f"workers/{worker.worker_id}")
    return _command(worker.harvester_id, "kill_worker", issuer, now, worker_id=worker.worker_id, reason=reason)


def set_limits_command(config: QueueConfig, limits: Mapping[str, LimitValue], issuer: str,
                       now: datetime) -> HarvesterCommand:
    """New limits for the queue's instance: at least one, and the queue's limits with them
    applied still keep the rules (`limits.queue_limit_workers` within max_workers…)."""
    if not limits:
        raise InvalidArgument("limits: give at least one limit to set", field="limits")
    counts = {name: int(value) for name, value in limits.items() if name in contract.QUEUE_LIMITS}
    try:
        contract.check_queue_limits(counts, "limits")
    except Violation as violation:
        raise InvalidArgument.of(violation) from None
    after = apply_limits(config, limits)
    for name in ("queue_limit_workers", "max_new_workers_per_cycle"):
        value = getattr(after, name)
        if value <= after.max_workers:
            continue
        if name in limits:
            raise InvalidArgument(f"limits.{name}: {value} would exceed max_workers ({after.max_workers}) of queue "
                                  f"{config.queue_id}", field=f"limits.{name}")
        raise InvalidArgument(f"limits.max_workers: {after.max_workers} would be below {name} ({value}) of queue "
                              f"{config.queue_id}", field="limits.max_workers")
    if after.queue_limit_jobs and after.map_type not in contract.PUSH_MAP_TYPES:
        raise InvalidArgument(f"limits.queue_limit_jobs: queue {config.queue_id} is a pull queue",
                              field="limits.queue_limit_jobs")
    return _command(config.harvester_id, "set_queue_limits", issuer, now, queue_id=config.queue_id,
                    limits=limits)


def complete_command(command: HarvesterCommand, done: bool, result: str, now: datetime) -> bool:
    """The instance says the command is done (or could not be done); False when it had said so
    already (a repeat: the first word stands)."""
    if command.state not in contract.OPEN_COMMAND_STATES:
        return False
    command.state = "done" if done else "failed"
    command.result = result
    command.update_time = now
    return True
