"""InstanceService: what harvester instances tell the server and ask of it. The access table lets
only the harvester and admin roles call; who may speak for which instance is the store's check
(the instance's owner), made in the transaction that acts."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from panda.harvester.v1 import instance_service_pb2, instance_service_pb2_grpc
from panda_runtime.contracts import Violation
from panda_runtime.contracts import harvester as contract
from panda_runtime.contracts.rules import check_text
from panda_runtime.service.errors import InvalidArgument, ResourceExhausted, ok_status
from panda_runtime.service.principals import current_principal
from panda_runtime.service.timestamps import timestamp
from server_svc.domain.harvester import check_instance_text, check_queue_configs
from server_svc.domain.job_specs import validate_queue_id
from server_svc.logic.harvester import HarvesterOperations
from server_svc.servicers.harvester_convert import (
    command_to_proto,
    config_from_proto,
    instance_to_proto,
    load_to_proto,
    report_from_proto,
)

__all__ = ["InstanceServicer", "check_harvester_id"]

# GetQueueLoads: at most this many queues named in one call (none: every queue).
MAX_LOAD_QUEUES = 10_000


def check_harvester_id(value: str, field: str = "harvester_id") -> str:
    try:
        return contract.check_harvester_id(value, field)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None


class InstanceServicer(instance_service_pb2_grpc.InstanceServiceServicer):
    def __init__(self, harvester: HarvesterOperations) -> None:
        self._harvester = harvester

    async def RegisterInstance(
        self, request: instance_service_pb2.RegisterInstanceRequest, context: grpc.aio.ServicerContext
    ) -> instance_service_pb2.RegisterInstanceResponse:
        check_harvester_id(request.harvester_id)
        check_instance_text(request.version, request.host)
        now = datetime.now(UTC)
        configs = [config_from_proto(config, now) for config in request.queue_configs]
        check_queue_configs(configs)
        instance = await self._harvester.register(request.harvester_id, request.version, request.host, configs,
                                                  current_principal())
        return instance_service_pb2.RegisterInstanceResponse(
            harvester=instance_to_proto(instance, alive=True),
            heartbeat_interval_seconds=self._harvester.heartbeat_interval_seconds,
            server_time=timestamp(datetime.now(UTC)),
        )

    async def Heartbeat(
        self, request: instance_service_pb2.HeartbeatRequest, context: grpc.aio.ServicerContext
    ) -> instance_service_pb2.HeartbeatResponse:
        check_harvester_id(request.harvester_id)
        commands = await self._harvester.heartbeat(request.harvester_id, current_principal())
        return instance_service_pb2.HeartbeatResponse(commands=[command_to_proto(c) for c in commands])

    async def ReportWorkers(
        self, request: instance_service_pb2.ReportWorkersRequest, context: grpc.aio.ServicerContext
    ) -> instance_service_pb2.ReportWorkersResponse:
        check_harvester_id(request.harvester_id)
        if len(request.workers) > contract.MAX_REPORTED_WORKERS:
            raise ResourceExhausted(f"{len(request.workers)} workers in one report; at most "
                                    f"{contract.MAX_REPORTED_WORKERS}: split it")
        reports = [report_from_proto(worker) for worker in request.workers]
        outcomes = await self._harvester.report(request.harvester_id, reports, current_principal())
        return instance_service_pb2.ReportWorkersResponse(
            results=[ok_status() if refused is None else refused.to_status() for refused in outcomes]
        )

    async def CompleteCommands(
        self, request: instance_service_pb2.CompleteCommandsRequest, context: grpc.aio.ServicerContext
    ) -> instance_service_pb2.CompleteCommandsResponse:
        check_harvester_id(request.harvester_id)
        if len(request.results) > contract.MAX_REPORTED_WORKERS:
            raise ResourceExhausted(f"at most {contract.MAX_REPORTED_WORKERS} results in one call")
        for index, result in enumerate(request.results):
            if result.command_id <= 0:
                raise InvalidArgument(f"results[{index}].command_id must be positive",
                                      field=f"results[{index}].command_id")
            try:
                check_text(result.result, f"results[{index}].result", max_length=contract.MAX_COMMAND_RESULT_LENGTH)
            except Violation as violation:
                raise InvalidArgument.of(violation) from None
        await self._harvester.complete(
            request.harvester_id, [(r.command_id, r.done, r.result) for r in request.results], current_principal()
        )
        return instance_service_pb2.CompleteCommandsResponse()

    async def GetQueueLoads(
        self, request: instance_service_pb2.GetQueueLoadsRequest, context: grpc.aio.ServicerContext
    ) -> instance_service_pb2.GetQueueLoadsResponse:
        if len(request.queue_ids) > MAX_LOAD_QUEUES:
            raise ResourceExhausted(f"at most {MAX_LOAD_QUEUES} queues in one call (none: every queue)")
        for index, queue_id in enumerate(request.queue_ids):
            validate_queue_id(queue_id, f"queue_ids[{index}]")
        loads = await self._harvester.queue_loads(list(request.queue_ids))
        return instance_service_pb2.GetQueueLoadsResponse(loads=[load_to_proto(load) for load in loads])
