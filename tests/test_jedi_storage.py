"""JEDI's datasets live on configured storage elements: a replica on an element the server does
not know (or named by a URL) is refused, and brokerage's locality compares element ids."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from panda.jedi.v1 import dataset_pb2, dataset_service_pb2, dataset_service_pb2_grpc
from tests.jedi_support import adler32_of, register_dataset
from tests.server_support import token_channel
from tests.test_storage_isolation import fields_of

pytest_plugins = ["tests.jedi_fixtures"]


def test_a_dataset_on_an_unknown_storage_element_is_refused(  # type: ignore[no-untyped-def]
    datasets_stub, local_queue, storage_dir: Path
) -> None:
    good = dataset_pb2.DatasetFile(lfn="a.dat", size_bytes=1, adler32=adler32_of(b"a"), storage_elements=["local"])
    for replicas, text in [
        (["nowhere"], "storage element nowhere is not configured at the server"),
        (["local", "nowhere"], "storage element nowhere is not configured at the server"),
        (["file:///etc"], "not a URL"),
    ]:
        bad = dataset_pb2.DatasetFile(lfn="b.dat", size_bytes=1, adler32=adler32_of(b"b"), storage_elements=replicas)
        with pytest.raises(grpc.RpcError) as raised:
            datasets_stub.RegisterDataset(dataset_service_pb2.RegisterDatasetRequest(
                dataset=dataset_pb2.Dataset(dataset_id="user.admin.elsewhere"), files=[good, bad]), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
        assert text in raised.value.details()
        assert fields_of(raised.value) == ["files[1].storage_elements"]
    with pytest.raises(grpc.RpcError) as missing:
        datasets_stub.GetDataset(dataset_service_pb2.GetDatasetRequest(dataset_id="user.admin.elsewhere"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # On a configured element it is taken.
    assert register_dataset(datasets_stub, "user.admin.here", storage_dir, 2)


def test_datasets_are_registered_in_scopes_their_owner_may_write(  # type: ignore[no-untyped-def]
    jedi, server, identity, local_queue, storage_dir: Path
) -> None:
    file = dataset_pb2.DatasetFile(lfn="a.dat", size_bytes=1, adler32=adler32_of(b"a"), storage_elements=["local"])
    with token_channel(jedi.address, identity, "alice") as channel:
        alice = dataset_service_pb2_grpc.DatasetServiceStub(channel)

        def register(name: str, scope: str, *files: dataset_pb2.DatasetFile) -> dataset_pb2.Dataset:
            return alice.RegisterDataset(dataset_service_pb2.RegisterDatasetRequest(
                dataset=dataset_pb2.Dataset(dataset_id=name, scope=scope), files=list(files)), timeout=30).dataset

        mine = register("user.alice.mine", "", file)
        assert mine.scope == "user.alice"
        (listed,) = alice.ListDatasetFiles(dataset_service_pb2.ListDatasetFilesRequest(
            dataset_id="user.alice.mine"), timeout=10).files
        assert (listed.scope, listed.lfn) == ("user.alice", "a.dat")
        foreign = dataset_pb2.DatasetFile()
        foreign.CopyFrom(file)
        foreign.scope = "user.bob"
        for name, scope, files, field in [("bobs", "user.bob", [file], "dataset.scope"),
                                          ("vos", "panda", [file], "dataset.scope"),
                                          ("mixed", "", [foreign], "files[0].scope")]:
            with pytest.raises(grpc.RpcError) as raised:
                register(name, scope, *files)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, raised.value.details()
            assert f"{field}: files of alice may not be written in scope" in raised.value.details()
