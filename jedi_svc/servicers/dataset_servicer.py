"""DatasetService: thin mapping between the contract and the dataset store."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import grpc

from jedi_svc.domain.datasets import FileSpec
from jedi_svc.domain.task_spec import check_dataset_name
from jedi_svc.servicers.convert import dataset_to_proto, file_to_proto, kind_from_text
from jedi_svc.store.dataset_store import DatasetStore
from panda.jedi.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from panda_runtime.service.db import DbRunner
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.filtering import parse_filter
from panda_runtime.service.pagination import decode_token, encode_token, page_size
from panda_runtime.service.principals import current_principal

__all__ = ["DatasetServicer", "check_files"]

FILTER_FIELDS: dict[str, Any] = {
    "dataset_id": str, "kind": kind_from_text, "owner": str, "task_id": int, "create_time": datetime,
}
ADLER32 = re.compile(r"^[0-9a-f]{8}$")
MAX_FILES = 200_000


def check_files(request: dataset_service_pb2.RegisterDatasetRequest) -> list[FileSpec]:
    if not request.files:
        raise InvalidArgument("a dataset needs at least one file", field="files")
    if len(request.files) > MAX_FILES:
        raise InvalidArgument(f"at most {MAX_FILES} files per dataset", field="files")
    seen: set[str] = set()
    specs: list[FileSpec] = []
    for index, f in enumerate(request.files):
        where = f"files[{index}]"
        lfn = f.lfn
        if not lfn or "/" in lfn or lfn.startswith(".") or len(lfn) > 1024 or lfn != lfn.strip():
            raise InvalidArgument(f"{where}: {lfn!r} is not a logical file name (no '/', not starting with '.')",
                                  field=f"{where}.lfn")
        if lfn in seen:
            raise InvalidArgument(f"{where}: {lfn} is listed twice", field=f"{where}.lfn")
        seen.add(lfn)
        if f.size_bytes < 0 or f.events < 0:
            raise InvalidArgument(f"{where}: size and events must not be negative", field=where)
        adler32 = f.adler32.strip().lower()
        if adler32 and len(adler32) < 8:
            adler32 = adler32.zfill(8)
        if not ADLER32.match(adler32):
            raise InvalidArgument(f"{where}: adler32 {f.adler32!r} is not 8 hex digits", field=f"{where}.adler32")
        elements = [se.strip() for se in f.storage_elements if se.strip()]
        if not elements:
            raise InvalidArgument(f"{where}: at least one storage element holding the file is required",
                                  field=f"{where}.storage_elements")
        for se in elements:
            if "://" not in se:
                raise InvalidArgument(f"{where}: storage element {se!r} is not a URL such as file:///data/se",
                                      field=f"{where}.storage_elements")
        specs.append(FileSpec(lfn, f.size_bytes, adler32, f.events, list(dict.fromkeys(elements))))
    return specs


class DatasetServicer(dataset_service_pb2_grpc.DatasetServiceServicer):
    def __init__(self, db: DbRunner, store: DatasetStore) -> None:
        self._db = db
        self._store = store

    async def RegisterDataset(
        self, request: dataset_service_pb2.RegisterDatasetRequest, context: grpc.aio.ServicerContext
    ) -> dataset_service_pb2.RegisterDatasetResponse:
        name = request.dataset.dataset_id.strip()
        check_dataset_name(name, "dataset.dataset_id")
        if len(request.request_id) > 64:
            raise InvalidArgument("request_id is longer than 64 characters", field="request_id")
        specs = check_files(request)
        owner, _ = current_principal().submitting_as(request.dataset.owner, "")
        record = await self._db.run(self._store.register, name, owner, specs, request.request_id)
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
        comparisons = parse_filter(request.filter, FILTER_FIELDS)
        position = decode_token(request.page_token, request.filter)
        records, total = await self._db.run(self._store.list_datasets, comparisons, limit=limit,
                                            before=int(position.get("before", 0)))
        token = ""
        if len(records) == limit and records[-1].dataset_id > 1:
            token = encode_token({"before": records[-1].dataset_id}, request.filter)
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
        position = decode_token(request.page_token, query)
        views, total = await self._db.run(self._store.list_files, request.dataset_id, task_id=request.task_id,
                                          limit=limit, after=int(position.get("after", 0)))
        token = encode_token({"after": views[-1].file.file_id}, query) if len(views) == limit else ""
        return dataset_service_pb2.ListDatasetFilesResponse(
            files=[file_to_proto(v) for v in views], next_page_token=token, total_size=total)
