"""StorageService: the registry of storage elements."""

from __future__ import annotations

from typing import Any

import grpc

from panda.server.v1 import storage_service_pb2, storage_service_pb2_grpc
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from server_svc.domain.storage import check_storage_element_id, check_url, check_users
from server_svc.logic.storage import StorageOperations
from server_svc.servicers.convert import storage_element_to_proto, storage_values_from_proto

__all__ = ["StorageServicer"]

_WRITABLE = ("url", "queues", "vos", "description")


def _check_values(values: dict[str, Any]) -> dict[str, Any]:
    """The writable fields, checked: the URL made canonical, queue ids and VO names well formed."""
    if "url" in values:
        if not values["url"]:
            raise InvalidArgument("a storage element needs a URL such as file:///data/se/site-a",
                                  field="storage_element.url")
        values["url"] = check_url(values["url"], "storage_element.url")
    check_users(values.get("queues", []), values.get("vos", []), "storage_element")
    if len(values.get("description", "")) > 4096:
        raise InvalidArgument("description is longer than 4096 characters", field="storage_element.description")
    return values


class StorageServicer(storage_service_pb2_grpc.StorageServiceServicer):
    def __init__(self, storage: StorageOperations) -> None:
        self._storage = storage

    async def CreateStorageElement(
        self, request: storage_service_pb2.CreateStorageElementRequest, context: grpc.aio.ServicerContext
    ) -> storage_service_pb2.CreateStorageElementResponse:
        element = request.storage_element
        check_storage_element_id(element.storage_element_id, "storage_element.storage_element_id")
        values = _check_values(storage_values_from_proto(element))
        record = await self._storage.create({"storage_element_id": element.storage_element_id, **values})
        return storage_service_pb2.CreateStorageElementResponse(storage_element=storage_element_to_proto(record))

    async def GetStorageElement(
        self, request: storage_service_pb2.GetStorageElementRequest, context: grpc.aio.ServicerContext
    ) -> storage_service_pb2.GetStorageElementResponse:
        check_storage_element_id(request.storage_element_id, "storage_element_id")
        record = await self._storage.get(request.storage_element_id)
        return storage_service_pb2.GetStorageElementResponse(storage_element=storage_element_to_proto(record))

    async def ListStorageElements(
        self, request: storage_service_pb2.ListStorageElementsRequest, context: grpc.aio.ServicerContext
    ) -> storage_service_pb2.ListStorageElementsResponse:
        limit = page_size(request.page_size)
        after = str(decode_token(request.page_token, "storage").get("after", ""))
        records = await self._storage.list_elements(after=after, limit=limit)
        token = encode_token({"after": records[-1].storage_element_id}, "storage") if len(records) == limit else ""
        return storage_service_pb2.ListStorageElementsResponse(
            storage_elements=[storage_element_to_proto(r) for r in records], next_page_token=token
        )

    async def UpdateStorageElement(
        self, request: storage_service_pb2.UpdateStorageElementRequest, context: grpc.aio.ServicerContext
    ) -> storage_service_pb2.UpdateStorageElementResponse:
        element = request.storage_element
        check_storage_element_id(element.storage_element_id, "storage_element.storage_element_id")
        paths = list(request.update_mask.paths) or list(_WRITABLE)
        for path in paths:
            if path not in _WRITABLE:
                raise InvalidArgument(
                    f"field {path!r} cannot be updated; updatable: {', '.join(_WRITABLE)}", field="update_mask"
                )
        every = storage_values_from_proto(element)
        values = _check_values({path: every[path] for path in paths})
        record = await self._storage.update(element.storage_element_id, values)
        return storage_service_pb2.UpdateStorageElementResponse(storage_element=storage_element_to_proto(record))
