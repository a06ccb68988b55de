"""Harvester's side of the server: the InstanceService calls it makes, with its own credentials,
through the one client every caller uses (a deadline on every call, the token renewed, gRPC's
retries), and the conversions between the server's messages and harvester's types."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from harvester_svc.domain.queue_config import MapType, MessengerType, QueueConfig, QueueStatus
from harvester_svc.domain.workers import WorkerRecord, WorkerState
from panda.common.v1 import resources_pb2
from panda.harvester.v1 import instance_service_pb2, worker_pb2
from panda.server.v1 import dispatch_service_pb2, dispatch_service_pb2_grpc
from panda_runtime.client import AsyncServerClient, ConnectConfig

__all__ = ["Command", "DispatchCall", "QueueWork", "ServerLink"]

_MAP_TYPES = {MapType.NO_JOB: worker_pb2.QueueConfig.MAP_TYPE_PULL,
              MapType.ONE_TO_ONE: worker_pb2.QueueConfig.MAP_TYPE_ONE_TO_ONE,
              MapType.MANY_TO_ONE: worker_pb2.QueueConfig.MAP_TYPE_MANY_TO_ONE}
_MESSENGERS = {MessengerType.GRPC: worker_pb2.QueueConfig.MESSENGER_GRPC,
               MessengerType.RELAY: worker_pb2.QueueConfig.MESSENGER_RELAY,
               MessengerType.SHARED_FILES: worker_pb2.QueueConfig.MESSENGER_SHARED_FILES}
_STATES = {state: worker_pb2.Worker.State.Value(f"STATE_{state.name}") for state in WorkerState}
# A pilot stream to the server (harvester's own, for a relayed or a shared-file pilot).
DispatchCall = grpc.aio.StreamStreamCall[dispatch_service_pb2.ConnectRequest, dispatch_service_pb2.ConnectResponse]
# At most this many workers in one ReportWorkers call (the server's limit).
REPORT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class QueueWork:
    """What the server says waits for a queue."""

    queue_id: str
    online: bool
    activated_jobs: int
    starting_jobs: int
    running_jobs: int
    # The largest activated job's needs, field by field.
    largest_cores: int = 0
    largest_memory_mb: int = 0


@dataclass(frozen=True, slots=True)
class Command:
    command_id: int
    kind: str  # "kill_worker" or "set_queue_limits"
    worker_id: str
    queue_id: str
    # The limits a SetQueueLimits command sets (only those it names), in the configuration's words.
    limits: Mapping[str, int | bool]
    issuer: str


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def queue_config_message(config: QueueConfig) -> worker_pb2.QueueConfig:
    return worker_pb2.QueueConfig(
        queue_id=config.name, online=config.status == QueueStatus.ONLINE, map_type=_MAP_TYPES[config.map_type],
        queue_limit_workers=config.n_queue_limit_worker if config.n_queue_limit_worker is not None else 0,
        max_workers=config.max_workers, max_new_workers_per_cycle=config.max_new_workers_per_cycle,
        queue_limit_jobs=config.n_queue_limit_job or 0, jobs_per_worker=config.n_jobs_per_worker,
        resources=resources_pb2.Resources(cores=config.resources.cores, memory_mb=config.resources.memory_mb,
                                          walltime_seconds=config.resources.walltime_seconds),
        plugin=config.submitter.plugin,
        plugin_parameters={name: json.dumps(value, default=list)
                           for name, value in config.submitter.parameters.items()},
        messenger=_MESSENGERS[config.messenger],
        worker_queued_timeout_seconds=config.worker_queued_timeout_seconds,
        worker_heartbeat_timeout_seconds=config.worker_heartbeat_timeout_seconds,
    )


def worker_message(worker: WorkerRecord) -> worker_pb2.Worker:
    return worker_pb2.Worker(
        worker_id=worker.worker_id, harvester_id=worker.harvester_id, queue=worker.queue, plugin=worker.plugin,
        batch_id=worker.batch_id, state=_STATES[worker.state], node=worker.node,
        resources=resources_pb2.Resources(cores=worker.cores, memory_mb=worker.memory_mb,
                                          walltime_seconds=worker.walltime_seconds),
        error=worker.error[:4000], exit_code=worker.exit_code or 0, submit_time=_timestamp(worker.submit_time),
        start_time=_timestamp(worker.start_time), end_time=_timestamp(worker.end_time),
    )


# The QueueLimits fields (typed as the generated HasField takes them) and PanDA's names for them.
_LimitField = Literal["max_workers", "queue_limit_workers", "max_new_workers_per_cycle", "queue_limit_jobs", "online"]
_LIMIT_FIELDS: tuple[tuple[_LimitField, str], ...] = (
    ("max_workers", "maxWorkers"), ("queue_limit_workers", "nQueueLimitWorker"),
    ("max_new_workers_per_cycle", "maxNewWorkersPerCycle"), ("queue_limit_jobs", "nQueueLimitJob"),
    ("online", "online"),
)


def _command(message: worker_pb2.HarvesterCommand) -> Command:
    limits: dict[str, int | bool] = {}
    for field, name in _LIMIT_FIELDS:
        if message.limits.HasField(field):
            limits[name] = getattr(message.limits, field)
    kind = {worker_pb2.HarvesterCommand.KIND_KILL_WORKER: "kill_worker",
            worker_pb2.HarvesterCommand.KIND_SET_QUEUE_LIMITS: "set_queue_limits"}.get(message.kind, "unknown")
    return Command(message.command_id, kind, message.worker_id, message.queue_id, limits, message.issuer)


class ServerLink:
    """The calls harvester makes to the server (PANDA_SERVER) as instance `harvester_id`."""

    def __init__(self, config: ConnectConfig, harvester_id: str) -> None:
        self.harvester_id = harvester_id
        self.deadline = config.deadline
        self._client = AsyncServerClient(config)
        self._instances = self._client.instances

    async def close(self) -> None:
        await self._client.close()

    def open_dispatch(self) -> DispatchCall:
        """A pilot stream to the server, as harvester (the relay forwards a relayed pilot's over it)."""
        return dispatch_service_pb2_grpc.DispatchServiceStub(self._client.channel).Connect()

    async def register(self, version: str, host: str, configs: Iterable[QueueConfig]) -> int:
        """Registers the instance and its queues; the heartbeat interval the server expects."""
        response = await self._instances.RegisterInstance(instance_service_pb2.RegisterInstanceRequest(
            harvester_id=self.harvester_id, version=version, host=host,
            queue_configs=[queue_config_message(config) for config in configs]), timeout=self.deadline)
        return int(response.heartbeat_interval_seconds)

    async def heartbeat(self) -> list[Command]:
        response = await self._instances.Heartbeat(
            instance_service_pb2.HeartbeatRequest(harvester_id=self.harvester_id), timeout=self.deadline)
        return [_command(message) for message in response.commands]

    async def report(self, workers: Sequence[WorkerRecord]) -> dict[str, str]:
        """Reports the workers; for each one the server refused, why (the others were taken)."""
        refused: dict[str, str] = {}
        for start in range(0, len(workers), REPORT_BATCH):
            batch = workers[start:start + REPORT_BATCH]
            response = await self._instances.ReportWorkers(instance_service_pb2.ReportWorkersRequest(
                harvester_id=self.harvester_id, workers=[worker_message(worker) for worker in batch]),
                timeout=self.deadline)
            for worker, status in zip(batch, response.results, strict=False):
                if status.code != 0:
                    refused[worker.worker_id] = status.message
        return refused

    async def complete(self, results: Mapping[int, tuple[bool, str]]) -> None:
        if not results:
            return
        await self._instances.CompleteCommands(instance_service_pb2.CompleteCommandsRequest(
            harvester_id=self.harvester_id,
            results=[instance_service_pb2.CommandResult(command_id=command_id, done=done, result=text)
                     for command_id, (done, text) in results.items()]), timeout=self.deadline)

    async def queue_work(self, queue_ids: Sequence[str]) -> dict[str, QueueWork]:
        response = await self._instances.GetQueueLoads(
            instance_service_pb2.GetQueueLoadsRequest(queue_ids=list(queue_ids)), timeout=self.deadline)
        return {load.queue_id: QueueWork(load.queue_id, load.online, load.activated_jobs, load.starting_jobs,
                                         load.running_jobs, load.largest_job.cores, load.largest_job.memory_mb)
                for load in response.loads}
