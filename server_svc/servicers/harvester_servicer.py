"""HarvesterService: workers, harvester instances, queue configurations and commands, for people.
Reads are open to anyone signed in, KillWorker and SetQueueLimits to admins (the access table);
lists page by keyset tokens bound to their filters."""

from __future__ import annotations

from datetime import datetime

import grpc

from panda.harvester.v1 import harvester_service_pb2, harvester_service_pb2_grpc
from panda_runtime.contracts import Violation
from panda_runtime.contracts import harvester as contract
from panda_runtime.contracts.rules import check_text
from panda_runtime.contracts.server import check_reason
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.ordering import Ordering, SortKey, decode_page, encode_page
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from panda_runtime.service.principals import current_principal
from server_svc.domain.job_specs import validate_queue_id
from server_svc.logic.harvester import HarvesterOperations
from server_svc.servicers.harvester_convert import (
    command_to_proto,
    config_to_proto,
    instance_to_proto,
    limits_from_proto,
    worker_state_from_proto,
    worker_to_proto,
)
from server_svc.servicers.instance_servicer import check_harvester_id

__all__ = ["HarvesterServicer"]

# Workers newest first: when the server first heard of each, then the id.
_NEWEST_WORKERS = Ordering((SortKey("create_time", True), SortKey("worker_id", True)))
_WORKER_KEYS = {"create_time": datetime, "worker_id": str}


def _check_worker_id(worker_id: str) -> None:
    try:
        check_text(worker_id, "worker_id", max_length=contract.MAX_WORKER_ID_LENGTH, required=True)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None


def _check_reason(reason: str) -> None:
    try:
        check_reason(reason)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None


class HarvesterServicer(harvester_service_pb2_grpc.HarvesterServiceServicer):
    def __init__(self, harvester: HarvesterOperations) -> None:
        self._harvester = harvester

    # -- workers ----------------------------------------------------------------------------------

    async def ListWorkers(
        self, request: harvester_service_pb2.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.ListWorkersResponse:
        limit = page_size(request.page_size)
        if request.queue:
            validate_queue_id(request.queue, "queue")
        if request.harvester_id:
            check_harvester_id(request.harvester_id)
        states = []
        for index, value in enumerate(request.states):
            state = worker_state_from_proto(value)
            if state not in contract.WORKER_STATES:
                raise InvalidArgument(f"states[{index}]: not a worker state ({value})", field=f"states[{index}]")
            states.append(state)
        query = f"queue={request.queue}&states={','.join(sorted(set(states)))}&harvester={request.harvester_id}"
        after = decode_page(request.page_token, _NEWEST_WORKERS, _WORKER_KEYS, query, "")
        workers, total = await self._harvester.list_workers(
            queue=request.queue, states=states, harvester_id=request.harvester_id,
            after=(after[0], after[1]) if after is not None else None, limit=limit + 1,
        )
        token = ""
        if len(workers) > limit:
            workers = workers[:limit]
            last = workers[-1]
            token = encode_page(_NEWEST_WORKERS, {"create_time": last.create_time, "worker_id": last.worker_id},
                                query, "")
        return harvester_service_pb2.ListWorkersResponse(
            workers=[worker_to_proto(w) for w in workers], next_page_token=token, total_size=total
        )

    async def GetWorker(
        self, request: harvester_service_pb2.GetWorkerRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.GetWorkerResponse:
        _check_worker_id(request.worker_id)
        worker = await self._harvester.get_worker(request.worker_id)
        return harvester_service_pb2.GetWorkerResponse(worker=worker_to_proto(worker))

    async def KillWorker(
        self, request: harvester_service_pb2.KillWorkerRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.KillWorkerResponse:
        _check_worker_id(request.worker_id)
        _check_reason(request.reason)
        command = await self._harvester.kill_worker(request.worker_id, request.reason, current_principal().subject)
        return harvester_service_pb2.KillWorkerResponse(command=command_to_proto(command))

    # -- instances --------------------------------------------------------------------------------

    async def ListHarvesters(
        self, request: harvester_service_pb2.ListHarvestersRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.ListHarvestersResponse:
        limit = page_size(request.page_size)
        after = str(decode_token(request.page_token, "", {"after": str}).get("after", ""))
        instances = await self._harvester.list_instances(after=after, limit=limit)
        token = encode_token({"after": instances[-1].harvester_id}, "") if len(instances) == limit else ""
        return harvester_service_pb2.ListHarvestersResponse(
            harvesters=[instance_to_proto(i, self._harvester.alive(i)) for i in instances], next_page_token=token
        )

    async def GetHarvester(
        self, request: harvester_service_pb2.GetHarvesterRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.GetHarvesterResponse:
        check_harvester_id(request.harvester_id)
        instance = await self._harvester.get_instance(request.harvester_id)
        return harvester_service_pb2.GetHarvesterResponse(
            harvester=instance_to_proto(instance, self._harvester.alive(instance)))

    async def ListHarvesterCommands(
        self, request: harvester_service_pb2.ListHarvesterCommandsRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.ListHarvesterCommandsResponse:
        check_harvester_id(request.harvester_id)
        limit = page_size(request.page_size)
        query = f"harvester={request.harvester_id}"
        before = int(decode_token(request.page_token, query, {"before": int}).get("before", 0))
        commands = await self._harvester.list_commands(request.harvester_id, before=before, limit=limit)
        token = encode_token({"before": commands[-1].command_id}, query) if len(commands) == limit else ""
        return harvester_service_pb2.ListHarvesterCommandsResponse(
            commands=[command_to_proto(c) for c in commands], next_page_token=token
        )

    # -- queue configurations ---------------------------------------------------------------------

    async def ListQueueConfigs(
        self, request: harvester_service_pb2.ListQueueConfigsRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.ListQueueConfigsResponse:
        limit = page_size(request.page_size)
        if request.harvester_id:
            check_harvester_id(request.harvester_id)
        query = f"harvester={request.harvester_id}"
        after = str(decode_token(request.page_token, query, {"after": str}).get("after", ""))
        configs = await self._harvester.list_configs(harvester_id=request.harvester_id, after=after, limit=limit)
        token = encode_token({"after": configs[-1].queue_id}, query) if len(configs) == limit else ""
        return harvester_service_pb2.ListQueueConfigsResponse(
            queue_configs=[config_to_proto(c) for c in configs], next_page_token=token
        )

    async def GetQueueConfig(
        self, request: harvester_service_pb2.GetQueueConfigRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.GetQueueConfigResponse:
        validate_queue_id(request.queue_id)
        config = await self._harvester.get_config(request.queue_id)
        return harvester_service_pb2.GetQueueConfigResponse(queue_config=config_to_proto(config))

    async def SetQueueLimits(
        self, request: harvester_service_pb2.SetQueueLimitsRequest, context: grpc.aio.ServicerContext
    ) -> harvester_service_pb2.SetQueueLimitsResponse:
        validate_queue_id(request.queue_id)
        if not request.HasField("limits"):
            raise InvalidArgument("limits is required", field="limits")
        command = await self._harvester.set_queue_limits(request.queue_id, limits_from_proto(request.limits),
                                                         current_principal().subject)
        return harvester_service_pb2.SetQueueLimitsResponse(command=command_to_proto(command))
