"""QueueService: the queue registry."""

from __future__ import annotations

import grpc

from panda.server.v1 import queue_pb2, queue_service_pb2, queue_service_pb2_grpc
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from server_svc.dispatcher import DispatchHub
from server_svc.domain.job_specs import validate_queue_id
from server_svc.servicers.convert import queue_status_from_proto, queue_to_proto, queue_values_from_proto
from server_svc.store.queue_store import QueueStore

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


def _check_values(values: dict[str, object]) -> None:
    if values.get("status") == "":
        raise InvalidArgument("queue status is required: online, offline, test or brokeroff", field="queue.status")
    for name in ("max_cores", "max_memory_mb", "max_walltime_seconds", "max_disk_mb"):
        if int(values.get(name, 0)) < 0:  # type: ignore[call-overload]
            raise InvalidArgument(f"{name} must not be negative", field="queue.max_resources")
    se = str(values.get("storage_element", ""))
    if se and "://" not in se:
        raise InvalidArgument(
            f"storage element {se!r} is not a URL such as file:///data/se", field="queue.storage_element"
        )


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    def __init__(self, db: DbRunner, store: QueueStore, hub: DispatchHub) -> None:
        self._db = db
        self._store = store
        self._hub = hub

    def _proto(self, record):  # type: ignore[no-untyped-def]
        return queue_to_proto(record, self._hub.connected(record.queue_id))

    async def CreateQueue(
        self, request: queue_service_pb2.CreateQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.CreateQueueResponse:
        queue = request.queue
        validate_queue_id(queue.queue_id, "queue.queue_id")
        values = queue_values_from_proto(queue)
        if not values["status"]:
            values["status"] = "online"
        _check_values(values)
        record = await self._db.run(self._store.create, {"queue_id": queue.queue_id, **values})
        self._hub.queues_changed()
        return queue_service_pb2.CreateQueueResponse(queue=self._proto(record))

    async def GetQueue(
        self, request: queue_service_pb2.GetQueueRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.GetQueueResponse:
        validate_queue_id(request.queue_id)
        record = await self._db.run(self._store.get, request.queue_id)
        return queue_service_pb2.GetQueueResponse(queue=self._proto(record))

    async def ListQueues(
        self, request: queue_service_pb2.ListQueuesRequest, context: grpc.aio.ServicerContext
    ) -> queue_service_pb2.ListQueuesResponse:
        limit = page_size(request.page_size)
        status = queue_status_from_proto(request.status)
        query = f"status={status}"
        after = str(decode_token(request.page_token, query).get("after", ""))
        records = await self._db.run(self._store.list, status=status, after=after, limit=limit)
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
        record = await self._db.run(self._store.update, queue.queue_id, values)
        self._hub.queues_changed()
        return queue_service_pb2.UpdateQueueResponse(queue=self._proto(record))


__all__ = ["QueueServicer", "queue_pb2"]
