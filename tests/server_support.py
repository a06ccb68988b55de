"""What the server's tests share besides fixtures: the test server's short timeouts, channels
carrying a user's token, and helpers to submit jobs, read them and wait for a state."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc

from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_service_pb2_grpc,
    storage_element_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import StaticToken
from tools.cluster import IdentityHandle

# Short timeouts so the watchdogs act within a test.
TEST_SERVER_ENV = {
    "PANDA_HEARTBEAT_INTERVAL_SECONDS": "1",
    "PANDA_HEARTBEAT_TIMEOUT_SECONDS": "4",
    "PANDA_SENT_TIMEOUT_SECONDS": "20",
    "PANDA_KILL_GRACE_SECONDS": "8",
    "PANDA_WATCHDOG_INTERVAL_SECONDS": "0.5",
    "PANDA_DISPATCH_POLL_SECONDS": "0.2",
}
FINAL_STATES = {job_pb2.Job.STATE_FINISHED, job_pb2.Job.STATE_FAILED, job_pb2.Job.STATE_CANCELLED,
                job_pb2.Job.STATE_CLOSED}


def token_channel(address: str, identity: IdentityHandle, user: str = "admin") -> grpc.Channel:
    """A channel to `address` whose calls carry `user`'s token."""
    return sync_channel(address, StaticToken(identity.token(user)))


class QueueStubs(queue_service_pb2_grpc.QueueServiceStub):
    """The queue service's stub, with the storage service's beside it (`storage`): a queue
    names a configured storage element."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.storage = storage_service_pb2_grpc.StorageServiceStub(channel)


def ensure_storage_element(
    stub: storage_service_pb2_grpc.StorageServiceStub, directory: Path, name: str = "", **fields: object
) -> str:
    """The storage element `name` (by default the directory's name) at `directory`, configured
    unless it is already; the directory is made."""
    name = name or directory.name
    directory.mkdir(parents=True, exist_ok=True)
    element = storage_element_pb2.StorageElement(storage_element_id=name, url=directory.as_uri(), **fields)  # type: ignore[arg-type]
    try:
        stub.CreateStorageElement(storage_service_pb2.CreateStorageElementRequest(storage_element=element), timeout=10)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    return name


def submit(stub: job_service_pb2_grpc.JobServiceStub, *jobs: job_pb2.Job) -> list[job_pb2.Job]:
    return list(stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=list(jobs)), timeout=30).jobs)


def get_job(stub: job_service_pb2_grpc.JobServiceStub, job_id: int) -> job_pb2.Job:
    return stub.GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10).job


def wait_for(
    stub: job_service_pb2_grpc.JobServiceStub,
    job_id: int,
    predicate: Callable[[job_pb2.Job], bool] = lambda job: job.state in FINAL_STATES,
    timeout: float = 60.0,
    what: str = "a final state",
) -> job_pb2.Job:
    deadline = time.monotonic() + timeout
    job = get_job(stub, job_id)
    while time.monotonic() < deadline:
        job = get_job(stub, job_id)
        if predicate(job):
            return job
        time.sleep(0.2)
    history = [(job_pb2.Job.State.Name(e.state), e.attempt, e.reason) for e in job.history]
    raise AssertionError(f"job {job_id} did not reach {what} in {timeout} s; it is "
                         f"{job_pb2.Job.State.Name(job.state)}; history {history}")
