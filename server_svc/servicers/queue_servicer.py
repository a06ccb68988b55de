"""QueueService: the queue registry."""

from __future__ import annotations

from typing import Any

import grpc

from panda.server.v1 import queue_pb2, queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.contracts import server as contract
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from server_svc.domain.job_specs import validate_queue_id
from server_svc.domain.queues import Queue
from server_svc.domain.storage import check_storage_element_id
from server_svc.logic.queues import QueueOperations
from server_svc.servicers.convert import queue_status_from_proto, queue_to_proto, queue_values_from_proto

__all__ = ["QueueServicer"]

_WRITABLE = {
    "status": ("status",),
    "max_resources": ("max_cores", "max_memory_mb", "max_walltime_seconds", "max_disk_mb"),
    "max_resources.cores": ("max_cores",),
    "max_resources.memory_mb": ("max_memory_mb",),
    "max_resources.walltime_seconds": ("max_walltime_seconds",),
    "max_resources.disk_mb": ("max_disk_mb",),
    "storage_element": ("storage_element",),
    "description": ("description",),
}


def _check_values(values: dict[str, Any]) -> None:
    if values.get("status") == "":
        raise InvalidArgument("queue status is required: online, offline, test or brokeroff", field="queue.status")
    for name in ("max_cores", "max_memory_mb", "max_walltime_seconds", "max_disk_mb"):
        if int(values.get(name, 0)) < 0:
            raise InvalidArgument(f"{name} must not be negative", field="queue.max_resources")
    element_id = str(values.get("storage_element", ""))
    if element_id:
        check_storage_element_id(element_id, "queue.storage_element")
    contract.check_queue_description(str(values.get("description", "")))


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, queues: QueueOperations) -> None:
        self._queues = queues

    def _proto(self, queue: Queue) -> queue_pb2.Queue:
        return queue_to_proto(queue, self._queues.connected_pilots(queue.queue_id))

    async def CreateQueue(
        self, request: queue_service_pb2.CreateQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.CreateQueueResponse:
        queue = request.queue
        validate_queue_id(queue.queue_id, "queue.queue_id")
        values = queue_values_from_proto(queue)
        if not values["status"]:
            values["status"] = "online"
        _check_values(values)
        record = await self._queues.create({"queue_id": queue.queue_id, **values})
        return queue_service_pb2.CreateQueueResponse(queue=self._proto(record))

    async def GetQueue(
        self, request: queue_service_pb2.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.GetQueueResponse:
        validate_queue_id(request.queue_id)
        record = await self._queues.get(request.queue_id)
        return queue_service_pb2.GetQueueResponse(queue=self._proto(record))

    async def ListQueues(
        self, request: queue_service_pb2.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.ListQueuesResponse:
        limit = page_size(request.page_size)
        status = queue_status_from_proto(request.status)
        query = f"status={status}"
        after = str(decode_token(request.page_token, query, {"after": str}).get("after", ""))
        records = await self._queues.list_queues(status=status, after=after, limit=limit)
        token = encode_token({"after": records[-1].queue_id}, query) if len(records) == limit else ""
        return queue_service_pb2.ListQueuesResponse(
            queues=[self._proto(r) for r in records], next_page_token=token
        )

    async def UpdateQueue(
        self, request: queue_service_pb2.UpdateQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.UpdateQueueResponse:
        queue = request.queue
        validate_queue_id(queue.queue_id, "queue.queue_id")
        all_values = queue_values_from_proto(queue)
        paths = list(request.update_mask.paths) or [p for p in _WRITABLE if "." not in p]
        columns: set[str] = set()
        for path in paths:
            if path not in _WRITABLE:
                raise InvalidArgument(
                    f"field {path!r} cannot be updated; updatable: {', '.join(_WRITABLE)}", field="update_mask"
                )
            columns.update(_WRITABLE[path])
        values = {c: all_values[c] for c in columns}
        _check_values(values)
        record = await self._queues.update(queue.queue_id, values)
        return queue_service_pb2.UpdateQueueResponse(queue=self._proto(record))

