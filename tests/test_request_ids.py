"""A request_id belongs to its caller (AIP-155), over real sockets on both databases: Bob with
Alice's key gets a job, task or dataset of his own, never hers; Alice reusing her key for
another request is ALREADY_EXISTS; a retry of the same request returns the first result."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from panda.jedi.v1 import (
    dataset_pb2,
    dataset_service_pb2,
    dataset_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)
from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from tests.jedi_support import JediHandle, register_dataset, task_params
from tests.server_support import token_channel
from tools.cluster import IdentityHandle, ServerHandle

pytest_plugins = ["tests.jedi_fixtures"]

J = job_pb2.Job
KEY = "shared-key-1"


@pytest.fixture
def channels(server: ServerHandle, identity: IdentityHandle) -> Iterator[dict[str, grpc.Channel]]:
    with ExitStack() as stack:
        yield {user: stack.enter_context(token_channel(server.address, identity, user))
               for user in ("alice", "bob", "prod", "admin")}


def submit(channel: grpc.Channel, *jobs: J, request_id: str = KEY, owner: str = "") -> list[J]:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    request = job_service_pb2.SubmitJobsRequest(jobs=list(jobs), request_id=request_id, owner=owner)
    return list(stub.SubmitJobs(request, timeout=10).jobs)


def refused(call, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    return raised.value


def test_submit_jobs_keys_belong_to_their_caller(channels: dict[str, grpc.Channel], local_queue: str) -> None:
    secret = J(queue="local", command=["echo", "alice"], environment={"ALICE_SECRET": "s3cr3t"})
    (alices,) = submit(channels["alice"], secret)

    # Bob with Alice's key: a new job of his own, nothing of hers.
    (bobs,) = submit(channels["bob"], J(queue="local", command=["echo", "bob"]))
    assert bobs.job_id != alices.job_id
    assert bobs.owner == "bob" and list(bobs.command) == ["echo", "bob"]
    assert "ALICE_SECRET" not in bobs.environment
    # A retry of Bob's request is Bob's job again.
    assert [j.job_id for j in submit(channels["bob"], J(queue="local", command=["echo", "bob"]))] == [bobs.job_id]

    # Two callers never share a key's result, even one that may submit for Alice.
    (for_alice,) = submit(channels["prod"], secret, owner="alice")
    assert for_alice.job_id not in (alices.job_id, bobs.job_id) and for_alice.owner == "alice"

    # Alice's retry of the same request (naming herself or not): the same job; her key with
    # another request: ALREADY_EXISTS.
    assert [j.job_id for j in submit(channels["alice"], secret)] == [alices.job_id]
    assert [j.job_id for j in submit(channels["alice"], secret, owner="alice")] == [alices.job_id]
    jobs = job_service_pb2_grpc.JobServiceStub(channels["alice"])
    error = refused(jobs.SubmitJobs, job_service_pb2.SubmitJobsRequest(
        jobs=[J(queue="local", command=["echo", "other"])], request_id=KEY))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "different request" in (error.details() or "")
    mine = jobs.ListJobs(job_service_pb2.ListJobsRequest(filter='owner = "alice"'), timeout=10).jobs
    assert sorted(j.job_id for j in mine) == sorted([alices.job_id, for_alice.job_id]), "nothing more was stored"


@pytest.fixture
def jedi_channels(jedi: JediHandle, identity: IdentityHandle) -> Iterator[dict[str, grpc.Channel]]:
    with ExitStack() as stack:
        yield {user: stack.enter_context(token_channel(jedi.address, identity, user)) for user in ("alice", "bob")}


def test_submit_task_keys_belong_to_their_caller(jedi_channels: dict[str, grpc.Channel], local_queue: str,
                                                  storage_dir: Path) -> None:
    alice = task_service_pb2_grpc.TaskServiceStub(jedi_channels["alice"])
    bob = task_service_pb2_grpc.TaskServiceStub(jedi_channels["bob"])
    register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(jedi_channels["alice"]), "keys.in", storage_dir, 1,
                     scope="user.alice")
    hers = task_params("alice.task", ["keys.in"], "keys.alice.out", "true", scout_jobs=0,
                       environment={"ALICE_SECRET": "s3cr3t"})
    hers.ClearField("owner")
    his = task_params("bob.task", ["keys.in"], "keys.bob.out", "true", scout_jobs=0)
    his.ClearField("owner")
    first = alice.SubmitTask(task_service_pb2.SubmitTaskRequest(params=hers, request_id=KEY), timeout=10).task

    bobs = bob.SubmitTask(task_service_pb2.SubmitTaskRequest(params=his, request_id=KEY), timeout=10).task
    assert bobs.task_id != first.task_id
    assert bobs.params.owner == "bob" and "ALICE_SECRET" not in bobs.params.environment
    again = bob.SubmitTask(task_service_pb2.SubmitTaskRequest(params=his, request_id=KEY), timeout=10).task
    assert again.task_id == bobs.task_id

    retried = alice.SubmitTask(task_service_pb2.SubmitTaskRequest(params=hers, request_id=KEY), timeout=10).task
    assert retried.task_id == first.task_id
    other = task_params("alice.other", ["keys.in"], "keys.alice.other", "true", scout_jobs=0)
    other.ClearField("owner")
    error = refused(alice.SubmitTask, task_service_pb2.SubmitTaskRequest(params=other, request_id=KEY))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    listed = alice.ListTasks(task_service_pb2.ListTasksRequest(filter='owner = "alice"'), timeout=10).tasks
    assert [t.task_id for t in listed] == [first.task_id], "nothing more was stored"


def test_register_dataset_keys_belong_to_their_caller(jedi_channels: dict[str, grpc.Channel],
                                                     local_queue: str) -> None:
    alice = dataset_service_pb2_grpc.DatasetServiceStub(jedi_channels["alice"])
    bob = dataset_service_pb2_grpc.DatasetServiceStub(jedi_channels["bob"])
    file = dataset_pb2.DatasetFile(lfn="f.1", size_bytes=1, adler32="00620062", storage_elements=["local"])

    def request(name: str) -> dataset_service_pb2.RegisterDatasetRequest:
        return dataset_service_pb2.RegisterDatasetRequest(dataset=dataset_pb2.Dataset(dataset_id=name), files=[file],
                                                          request_id=KEY)

    hers = alice.RegisterDataset(request("user.alice.keys"), timeout=10).dataset
    his = bob.RegisterDataset(request("user.bob.keys"), timeout=10).dataset
    assert (his.dataset_id, his.owner) == ("user.bob.keys", "bob")
    assert bob.RegisterDataset(request("user.bob.keys"), timeout=10).dataset.dataset_id == "user.bob.keys"
    assert alice.RegisterDataset(request("user.alice.keys"), timeout=10).dataset.dataset_id == hers.dataset_id
    error = refused(alice.RegisterDataset, request("user.alice.other"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    missing = refused(alice.GetDataset, dataset_service_pb2.GetDatasetRequest(dataset_id="user.alice.other"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND, "nothing was stored"
