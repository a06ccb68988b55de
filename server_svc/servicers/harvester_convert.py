"""panda.harvester.v1 messages to the server's harvester records and back. Enum values become the
contract's names (`STATE_RUNNING` is `running`); a value this server does not know becomes a name
the domain's checks refuse, naming the field."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from panda.common.v1 import resources_pb2
from panda.harvester.v1 import instance_service_pb2, worker_pb2
from panda_runtime.contracts import harvester as contract
from panda_runtime.service.timestamps import timestamp
from server_svc.domain.harvester import HarvesterCommand, HarvesterInstance, LimitValue, QueueConfig, QueueLoad
from server_svc.domain.harvester_workers import Worker, WorkerReport

__all__ = [
    "command_to_proto", "config_from_proto", "config_to_proto", "instance_to_proto", "limits_from_proto",
    "load_to_proto", "report_from_proto", "worker_state_from_proto", "worker_to_proto",
]

W = worker_pb2.Worker
Q = worker_pb2.QueueConfig
C = worker_pb2.HarvesterCommand


def _names(enum: object, prefix: str) -> tuple[dict[int, str], dict[str, int]]:
    """An enum's values by the contract's name, both ways (the unspecified value left out)."""
    values: dict[str, int] = {name.removeprefix(prefix).lower(): number
                              for name, number in enum.items() if number}  # type: ignore[attr-defined]
    return {number: name for name, number in values.items()}, values


_WORKER_STATE, _WORKER_STATE_VALUE = _names(W.State, "STATE_")
_MAP_TYPE, _MAP_TYPE_VALUE = _names(Q.MapType, "MAP_TYPE_")
_MESSENGER, _MESSENGER_VALUE = _names(Q.Messenger, "MESSENGER_")
_KIND, _KIND_VALUE = _names(C.Kind, "KIND_")
_COMMAND_STATE, _COMMAND_STATE_VALUE = _names(C.State, "STATE_")
assert tuple(_WORKER_STATE_VALUE) == contract.WORKER_STATES
assert tuple(_MAP_TYPE_VALUE) == contract.MAP_TYPES and tuple(_MESSENGER_VALUE) == contract.MESSENGERS
assert tuple(_KIND_VALUE) == contract.COMMAND_KINDS and tuple(_COMMAND_STATE_VALUE) == contract.COMMAND_STATES
# A time no worker can have: what a Timestamp that is no date becomes (the checks refuse it).
_NO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _name(names: Mapping[int, str], value: int) -> str:
    """The name of an enum value; "" for the unspecified one, "#N" for one this server does not know."""
    return names.get(value, f"#{value}" if value else "")


def worker_state_from_proto(value: int) -> str:
    return _name(_WORKER_STATE, value)


def _time(moment: Timestamp, given: bool) -> datetime | None:
    if not given:
        return None
    try:
        return moment.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        return _NO_TIME


def report_from_proto(worker: worker_pb2.Worker) -> WorkerReport:
    resources = worker.resources
    return WorkerReport(
        worker_id=worker.worker_id, harvester_id=worker.harvester_id, queue=worker.queue, plugin=worker.plugin,
        batch_id=worker.batch_id, state=worker_state_from_proto(worker.state), node=worker.node,
        cores=resources.cores, memory_mb=resources.memory_mb, walltime_seconds=resources.walltime_seconds,
        disk_mb=resources.disk_mb, error=worker.error, exit_code=worker.exit_code,
        submit_time=_time(worker.submit_time, worker.HasField("submit_time")),
        start_time=_time(worker.start_time, worker.HasField("start_time")),
        end_time=_time(worker.end_time, worker.HasField("end_time")),
    )


def worker_to_proto(worker: Worker) -> worker_pb2.Worker:
    return W(
        name=f"workers/{worker.worker_id}", worker_id=worker.worker_id, harvester_id=worker.harvester_id,
        queue=worker.queue, plugin=worker.plugin, batch_id=worker.batch_id,
        state=_WORKER_STATE_VALUE.get(worker.state, 0), node=worker.node,  # type: ignore[arg-type]
        resources=resources_pb2.Resources(cores=worker.cores, memory_mb=worker.memory_mb,
                                          walltime_seconds=worker.walltime_seconds, disk_mb=worker.disk_mb),
        error=worker.error, exit_code=worker.exit_code, submit_time=timestamp(worker.submit_time),
        start_time=timestamp(worker.start_time), end_time=timestamp(worker.end_time),
        update_time=timestamp(worker.update_time), job_ids=worker.job_ids,
    )


def instance_to_proto(instance: HarvesterInstance, alive: bool) -> worker_pb2.HarvesterInstance:
    return worker_pb2.HarvesterInstance(
        name=f"harvesters/{instance.harvester_id}", harvester_id=instance.harvester_id, version=instance.version,
        host=instance.host, queues=instance.queues, register_time=timestamp(instance.register_time),
        heartbeat_time=timestamp(instance.heartbeat_time), alive=alive, worker_counts=instance.worker_counts,
    )


def config_from_proto(config: worker_pb2.QueueConfig, now: datetime) -> QueueConfig:
    """A configuration as an instance registers it (its instance is set when it is stored)."""
    resources = config.resources
    return QueueConfig(
        queue_id=config.queue_id, harvester_id="", online=config.online, map_type=_name(_MAP_TYPE, config.map_type),
        queue_limit_workers=config.queue_limit_workers, max_workers=config.max_workers,
        max_new_workers_per_cycle=config.max_new_workers_per_cycle, queue_limit_jobs=config.queue_limit_jobs,
        jobs_per_worker=config.jobs_per_worker, cores=resources.cores, memory_mb=resources.memory_mb,
        walltime_seconds=resources.walltime_seconds, disk_mb=resources.disk_mb, plugin=config.plugin,
        plugin_parameters=dict(config.plugin_parameters), messenger=_name(_MESSENGER, config.messenger),
        worker_queued_timeout_seconds=config.worker_queued_timeout_seconds,
        worker_heartbeat_timeout_seconds=config.worker_heartbeat_timeout_seconds, update_time=now,
    )


def config_to_proto(config: QueueConfig) -> worker_pb2.QueueConfig:
    return Q(
        name=f"queueConfigs/{config.queue_id}", queue_id=config.queue_id, harvester_id=config.harvester_id,
        online=config.online, map_type=_MAP_TYPE_VALUE.get(config.map_type, 0),  # type: ignore[arg-type]
        queue_limit_workers=config.queue_limit_workers, max_workers=config.max_workers,
        max_new_workers_per_cycle=config.max_new_workers_per_cycle, queue_limit_jobs=config.queue_limit_jobs,
        jobs_per_worker=config.jobs_per_worker,
        resources=resources_pb2.Resources(cores=config.cores, memory_mb=config.memory_mb,
                                          walltime_seconds=config.walltime_seconds, disk_mb=config.disk_mb),
        plugin=config.plugin, plugin_parameters=config.plugin_parameters,
        messenger=_MESSENGER_VALUE.get(config.messenger, 0),  # type: ignore[arg-type]
        worker_queued_timeout_seconds=config.worker_queued_timeout_seconds,
        worker_heartbeat_timeout_seconds=config.worker_heartbeat_timeout_seconds, worker_counts=config.worker_counts,
    )


def limits_from_proto(limits: worker_pb2.QueueLimits) -> dict[str, LimitValue]:
    """The limits given (an unset field keeps its value)."""
    given: dict[str, LimitValue] = {field.name: value for field, value in limits.ListFields()}
    return given


def command_to_proto(command: HarvesterCommand) -> worker_pb2.HarvesterCommand:
    return C(
        command_id=command.command_id, harvester_id=command.harvester_id,
        kind=_KIND_VALUE.get(command.kind, 0), worker_id=command.worker_id,  # type: ignore[arg-type]
        queue_id=command.queue_id, limits=worker_pb2.QueueLimits(**command.limits),  # type: ignore[arg-type]
        state=_COMMAND_STATE_VALUE.get(command.state, 0), result=command.result,  # type: ignore[arg-type]
        reason=command.reason, issuer=command.issuer, create_time=timestamp(command.create_time),
        update_time=timestamp(command.update_time),
    )


def load_to_proto(load: QueueLoad) -> instance_service_pb2.QueueLoad:
    return instance_service_pb2.QueueLoad(
        queue_id=load.queue_id, online=load.online, activated_jobs=load.activated_jobs,
        starting_jobs=load.starting_jobs, running_jobs=load.running_jobs,
        largest_job=resources_pb2.Resources(cores=load.largest_cores, memory_mb=load.largest_memory_mb,
                                            walltime_seconds=load.largest_walltime_seconds,
                                            disk_mb=load.largest_disk_mb),
    )
