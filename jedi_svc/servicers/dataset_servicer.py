"""DatasetService: thin mapping between the contract and the dataset store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc

from jedi_svc.domain.datasets import assign_scopes, check_files, check_replicas
from jedi_svc.domain.task_spec import check_dataset_name
from jedi_svc.logic.server_client import ServerCalls
from jedi_svc.servicers.convert import dataset_to_proto, file_specs_from_proto, file_to_proto, kind_from_text
from jedi_svc.store.dataset_store import DatasetStore
from jedi_svc.store.records import DatasetRecord
from panda.jedi.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from panda_runtime.contracts import jedi as jedi_contract
from panda_runtime.contracts import rules
from panda_runtime.contracts import server as server_contract
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.filtering import parse_filter
from panda_runtime.service.idempotency import request_digest
from panda_runtime.service.ordering import decode_page, encode_page, parse_order_by
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from panda_runtime.service.principals import current_principal
from panda_runtime.service.scopes import check_scope, check_writable, user_scope, writable_scopes

__all__ = ["DatasetServicer"]

FILTER_FIELDS: dict[str, Any] = {
    "dataset_id": str, "kind": kind_from_text, "owner": str, "task_id": int, "create_time": datetime,
}

_SORT_KINDS = {name: FILTER_FIELDS[name] for name in jedi_contract.DATASET_SORT_FIELDS}


def _sort_value(record: DatasetRecord, field: str) -> Any:
    """A row's value of a sort field (`dataset_id` is the dataset's name)."""
    return record.name if field == "dataset_id" else getattr(record, field)


class DatasetServicer(dataset_service_pb2_grpc.DatasetServiceServicer):
    def __init__(self, db: DbRunner, store: DatasetStore, server: ServerCalls) -> None:
        self._db = db
        self._store = store
        self._server = server

    async def RegisterDataset(
        self, request: dataset_service_pb2.RegisterDatasetRequest, context: grpc.aio.ServicerContext
    ) -> dataset_service_pb2.RegisterDatasetResponse:
        name = request.dataset.dataset_id.strip()
        check_dataset_name(name, "dataset.dataset_id")
        rules.check_request_id(request.request_id)
        rules.check_text(request.dataset.owner, "dataset.owner", max_length=server_contract.MAX_OWNER_LENGTH)
        specs = check_files(file_specs_from_proto(request.files))
        caller = current_principal()
        owner, vo = caller.submitting_as(request.dataset.owner, "")
        writable = writable_scopes(caller, owner, vo)
        scope = check_scope(request.dataset.scope.strip() or user_scope(owner), "dataset.scope")
        check_writable(scope, writable, owner, "dataset.scope")
        specs = assign_scopes(specs, scope, writable, owner)
        check_replicas(specs, [e.element_id for e in await self._server.storage_elements()])
        digest = ""
        if request.request_id:
            asked = dataset_service_pb2.RegisterDatasetRequest(dataset=request.dataset, files=request.files)
            asked.dataset.owner = owner
            asked.dataset.scope = scope
            digest = request_digest(asked)
        record = await self._db.run(self._store.register, name, owner, scope, specs, request.request_id,
                                    caller=caller.subject, digest=digest)
        return dataset_service_pb2.RegisterDatasetResponse(dataset=dataset_to_proto(record))

    async def GetDataset(
        self, request: dataset_service_pb2.GetDatasetRequest, context: grpc.aio.ServicerContext
    ) -> dataset_service_pb2.GetDatasetResponse:
        check_dataset_name(request.dataset_id, "dataset_id")
        record = await self._db.run(self._store.get, request.dataset_id)
        return dataset_service_pb2.GetDatasetResponse(dataset=dataset_to_proto(record))

    async def ListDatasets(
        self, request: dataset_service_pb2.ListDatasetsRequest, context: grpc.aio.ServicerContext
    ) -> dataset_service_pb2.ListDatasetsResponse:
        limit = page_size(request.page_size)
        selected = parse_filter(request.filter, FILTER_FIELDS)
        if not request.order_by:
            # Newest first, by registration: the order (and the page tokens) it always had.
            position = decode_token(request.page_token, request.filter, {"before": int})
            records, total = await self._db.run(self._store.list_datasets, selected, limit=limit,
                                                before=int(position.get("before", 0)))
            token = ""
            if len(records) == limit and records[-1].dataset_id > 1:
                token = encode_token({"before": records[-1].dataset_id}, request.filter)
            return dataset_service_pb2.ListDatasetsResponse(
                datasets=[dataset_to_proto(r) for r in records], next_page_token=token, total_size=total)
        ordering = parse_order_by(request.order_by, _SORT_KINDS, "dataset_id")
        after = decode_page(request.page_token, ordering, _SORT_KINDS, request.filter, request.order_by)
        # One row more than the page: whether another page follows.
        records, total = await self._db.run(self._store.list_datasets_sorted, selected, ordering=ordering,
                                            limit=limit + 1, after=after)
        token = ""
        if len(records) > limit:
            records = records[:limit]
            token = encode_page(ordering, {name: _sort_value(records[-1], name) for name in ordering.fields},
                                request.filter, request.order_by)
        return dataset_service_pb2.ListDatasetsResponse(
            datasets=[dataset_to_proto(r) for r in records], next_page_token=token, total_size=total)

    async def ListDatasetFiles(
        self, request: dataset_service_pb2.ListDatasetFilesRequest, context: grpc.aio.ServicerContext
    ) -> dataset_service_pb2.ListDatasetFilesResponse:
        check_dataset_name(request.dataset_id, "dataset_id")
        if request.task_id < 0:
            raise InvalidArgument("task_id must not be negative", field="task_id")
        limit = page_size(request.page_size)
        query = f"{request.dataset_id}|{request.task_id}"
        position = decode_token(request.page_token, query, {"after": int})
        views, total = await self._db.run(self._store.list_files, request.dataset_id, task_id=request.task_id,
                                          limit=limit, after=int(position.get("after", 0)))
        token = encode_token({"after": views[-1].file.file_id}, query) if len(views) == limit else ""
        return dataset_service_pb2.ListDatasetFilesResponse(
            files=[file_to_proto(v) for v in views], next_page_token=token, total_size=total)
