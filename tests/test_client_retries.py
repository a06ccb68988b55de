"""The client base (panda_runtime.client): gRPC itself retries the calls that are safe to repeat
(reads, and creates that carry a request_id) when the service answers UNAVAILABLE, and no
other; the default deadline, the caller's token, and errors for people. Against a stand-in
JobService that answers UNAVAILABLE to the first attempts of every call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest

from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from panda_runtime.client import (
    AsyncServerClient,
    ConnectConfig,
    IamClient,
    JediClient,
    RetryPolicy,
    ServerClient,
    ServiceError,
)
from panda_runtime.client._service_config import retryable_methods
from panda_runtime.client.credentials import StaticToken
from tools.cluster import free_port

# Fast backoffs: the tests wait for gRPC's retries, not for a person's.
QUICK = RetryPolicy(initial_backoff=0.01, max_backoff=0.05)


@dataclass
class StandIn(job_service_pb2_grpc.JobServiceServicer):
    """Answers UNAVAILABLE to the first `unavailable_first` attempts of each RPC, then succeeds;
    counts the attempts and remembers what each call carried."""

    unavailable_first: int = 1
    attempts: Counter[str] = field(default_factory=Counter)
    deadlines: list[float | None] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _attempt(self, name: str, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.attempts[name] += 1
            seen = self.attempts[name]
            self.deadlines.append(context.time_remaining())
            self.tokens += [value for key, value in context.invocation_metadata() if key == "authorization"]
        if seen <= self.unavailable_first:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{name}: not now (attempt {seen})")

    def SubmitJobs(self, request, context):  # type: ignore[no-untyped-def]
        self._attempt("SubmitJobs", context)
        return job_service_pb2.SubmitJobsResponse(jobs=[job_pb2.Job(job_id=7)])

    def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        self._attempt("GetJob", context)
        if request.job_id == 404:
            context.abort(grpc.StatusCode.NOT_FOUND, "job 404 not found")
        return job_service_pb2.GetJobResponse(job=job_pb2.Job(job_id=request.job_id))

    def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        self._attempt("ListJobs", context)
        return job_service_pb2.ListJobsResponse(total_size=0)

    def KillJobs(self, request, context):  # type: ignore[no-untyped-def]
        self._attempt("KillJobs", context)
        return job_service_pb2.KillJobsResponse()


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    servicer = StandIn()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    job_service_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_the_safe_rpcs_are_the_reads_and_the_creates_with_a_request_id() -> None:
    def names(client: type) -> set[str]:
        return {method.name for method in retryable_methods(client.api)}

    assert names(ServerClient) == {"SubmitJobs", "GetJob", "ListJobs", "CountJobs", "ListErrorCodes", "GetQueue",
                                   "ListQueues", "GetStorageElement", "ListStorageElements", "ListWorkers",
                                   "GetWorker", "ListHarvesters", "GetHarvester", "ListQueueConfigs",
                                   "GetQueueConfig", "ListHarvesterCommands", "GetQueueLoads"}
    assert names(JediClient) == {"SubmitTask", "GetTask", "ListTasks", "CountTasks", "RegisterDataset", "GetDataset",
                                 "ListDatasets", "ListDatasetFiles"}
    assert names(IamClient) == {"GetUser", "ListUsers", "ListGroups", "GetClient", "ListClients", "WhoAmI"}


def test_grpc_retries_a_read_and_a_create_with_a_request_id(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in
    servicer.unavailable_first = 2
    with ServerClient(ConnectConfig(address, retry=QUICK)) as client:
        assert client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=3)).job.job_id == 3
        submitted = client.jobs.SubmitJobs(job_service_pb2.SubmitJobsRequest(request_id="r-1"))
    assert [job.job_id for job in submitted.jobs] == [7]
    assert servicer.attempts == {"GetJob": 3, "SubmitJobs": 3}


def test_a_call_not_safe_to_repeat_fails_at_once(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in
    with ServerClient(ConnectConfig(address, retry=QUICK)) as client, pytest.raises(grpc.RpcError) as failed:
        client.jobs.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[1]))
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == {"KillJobs": 1}


def test_without_the_retry_policy_the_read_fails_too(stand_in: tuple[StandIn, str]) -> None:
    """What the test above the last relies on: the retries are the policy's, nobody else's."""
    servicer, address = stand_in
    with ServerClient(ConnectConfig(address, retry=RetryPolicy.off())) as client, pytest.raises(grpc.RpcError):
        client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=3))
    assert servicer.attempts == {"GetJob": 1}


def test_gives_up_after_the_policys_attempts(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in
    servicer.unavailable_first = 10
    with ServerClient(ConnectConfig(address, retry=QUICK)) as client, pytest.raises(grpc.RpcError) as failed:
        client.jobs.ListJobs(job_service_pb2.ListJobsRequest())
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == {"ListJobs": QUICK.max_attempts}


def test_the_asyncio_client_retries_the_same_way(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in

    async def calls() -> tuple[int, grpc.StatusCode]:
        async with AsyncServerClient(ConnectConfig(address, retry=QUICK)) as client:
            job = (await client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=5))).job
            try:
                await client.jobs.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[5]))
            except grpc.aio.AioRpcError as error:
                return job.job_id, error.code()
        raise AssertionError("KillJobs succeeded at its first attempt")

    assert asyncio.run(calls()) == (5, grpc.StatusCode.UNAVAILABLE)
    assert servicer.attempts == {"GetJob": 2, "KillJobs": 1}


def test_every_call_carries_the_token_and_a_deadline(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in
    servicer.unavailable_first = 0
    config = ConnectConfig(address, deadline=5.0, tokens=StaticToken("t0ken"))
    with ServerClient(config) as client:
        client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=1))
        client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=1), timeout=120)  # the caller's own wins
    first, second = servicer.deadlines  # as the server sees them (gRPC rounds the timeout up a little)
    assert first is not None and 0 < first <= 6
    assert second is not None and 60 < second <= 121
    assert servicer.tokens == ["Bearer t0ken", "Bearer t0ken"]


def test_errors_for_people(stand_in: tuple[StandIn, str]) -> None:
    servicer, address = stand_in
    servicer.unavailable_first = 0
    with pytest.raises(ServiceError) as refused, ServerClient(ConnectConfig(address)) as client:
        client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=404))
    assert (refused.value.message, refused.value.code) == ("NOT_FOUND: job 404 not found", grpc.StatusCode.NOT_FOUND)
    assert not refused.value.unreachable

    nobody = f"127.0.0.1:{free_port()}"
    config = ConnectConfig(nobody, retry=QUICK, unreachable_hint="is it running?")
    with pytest.raises(ServiceError) as away, ServerClient(config) as client:
        client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=1))
    assert away.value.message == f"cannot reach the server at {nobody} (is it running?)"
    assert away.value.unreachable


def test_the_command_line_rides_out_a_moment_of_unavailability(stand_in: tuple[StandIn, str]) -> None:
    """`panda` as a user runs it: a read succeeds through the retry; `job kill` is not repeated."""
    servicer, address = stand_in

    def panda(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "panda_cli.main", "--server", address, *argv],
                              capture_output=True, text=True, timeout=60)

    listed = panda("jobs")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "no jobs\nshowing 0 of 0\n", "")
    killed = panda("job", "kill", "1")
    assert (killed.returncode, killed.stdout) == (5, "")  # unavailable: try again later
    assert killed.stderr == "panda: UNAVAILABLE: KillJobs: not now (attempt 1)\n"
    assert servicer.attempts == {"ListJobs": 2, "KillJobs": 1}
