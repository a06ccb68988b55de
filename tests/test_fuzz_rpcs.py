"""Every RPC of every service, fuzzed: for each method the contracts' descriptors name (a new one is
fuzzed without a change here), Hypothesis makes requests with any field set to anything (NUL,
very long and unicode text, negative and huge numbers, NaN, infinities, long lists, crafted page
tokens and filters) and sends them, as an admin and as a user, to a real identity service, server
and JEDI on one database, SQLite and PostgreSQL. None may answer INTERNAL or UNKNOWN (nor
UNAVAILABLE: the database is up). The count of requests and the codes they got, per RPC, are
printed (`-s`) and written to `fuzz-<database>.txt` in the test's directory.

A queue, a dataset, a task, a job and a harvester instance with a worker are there from the start,
so that requests naming them (ids 1 and names such as "local" are among the values tried) reach
the code behind the look-up.
PANDA_FUZZ_EXAMPLES sets the examples per RPC (default 40: under a minute per database)."""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panda.jedi.v1 import dataset_service_pb2_grpc, task_service_pb2_grpc
from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import ClientCredentialsToken, StaticToken
from tests.fuzz_support import Rpc, requests, rpcs
from tests.jedi_support import make_queue, new_jedi, register_dataset, submit_task, task_params
from tests.registry_support import Stubs, config, worker
from tests.server_support import TEST_SERVER_ENV, QueueStubs
from tools.cluster import drop_database, fresh_database, start_iam, start_server

EXAMPLES = int(os.environ.get("PANDA_FUZZ_EXAMPLES", "40"))
# What bad input must never get: a fault of the service's own, or an outage while nothing is down.
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
# Who calls: an admin (past every access check) and a user; the pilot stream's callers are pilots
# (and an admin, whom it refuses).
CALLERS = ("admin", "alice", "pilot", "harvester")
CALLERS_OF = {"DispatchService": ("pilot", "pilot", "pilot", "admin"),
              "InstanceService": ("harvester", "harvester", "admin", "alice")}
UNARY_DEADLINE, STREAM_DEADLINE = 20.0, 0.5


@dataclass
class Mesh:
    addresses: dict[str, str]  # contract package -> where its services listen
    tokens: dict[str, str]
    logs: dict[str, Path]


@pytest.fixture(params=["sqlite", "postgresql"])
def mesh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mesh]:
    """An identity service of its own (the fuzz creates, changes and deletes identities), a
    server and JEDI, all on one fresh database."""
    url = fresh_database(request.param, tmp_path, f"panda_fuzz_{uuid.uuid4().hex[:10]}")
    iam = start_iam(tmp_path / "iam", url)
    server = start_server(tmp_path / "server", url, {**iam.trust_env(), **TEST_SERVER_ENV})
    jedi = new_jedi(server, tmp_path / "logs", **iam.robot_env("panda-jedi"))
    jedi.start()
    try:
        harvester = ClientCredentialsToken(iam.issuer, "panda-harvester", iam.secrets["panda-harvester"]).token()
        seed(server.address, jedi.address, iam.token("admin"), iam.token("alice"), harvester, tmp_path / "se")
        yield Mesh({"panda.server.v1": server.address, "panda.harvester.v1": server.address,
                    "panda.jedi.v1": jedi.address, "panda.iam.v1": iam.address},
                   {"admin": iam.token("admin"), "alice": iam.token("alice"), "pilot": iam.pilot_token(),
                    "harvester": harvester},
                   {"server": server.log_file(), "jedi": jedi.log_file(), "iam": iam.log_file()})
    finally:
        for handle in (jedi, server, iam):
            handle.stop()
        drop_database(url)


def seed(server: str, jedi: str, admin: str, alice: str, harvester: str, se_dir: Path) -> None:
    """What requests may name: queue `local`, dataset `fuzz.in`, a task and a job of alice's, and
    harvester instance `h` (the robot's), which provisions `local` and has reported worker `h-1`."""
    with sync_channel(server, StaticToken(admin)) as as_admin, sync_channel(server, StaticToken(alice)) as to_server, \
            sync_channel(jedi, StaticToken(alice)) as to_jedi, sync_channel(server, StaticToken(harvester)) as robot:
        make_queue(QueueStubs(as_admin), "local", se_dir)
        register_dataset(dataset_service_pb2_grpc.DatasetServiceStub(to_jedi), "fuzz.in", se_dir, 2,
                         scope="user.alice")
        params = task_params("fuzz", ["fuzz.in"], "fuzz.out", "cat ${IN} > ${OUT}", scout_jobs=0)
        submit_task(task_service_pb2_grpc.TaskServiceStub(to_jedi), params)
        job_service_pb2_grpc.JobServiceStub(to_server).SubmitJobs(job_service_pb2.SubmitJobsRequest(
            jobs=[job_pb2.Job(queue="local", command=["true"])]), timeout=10)
        instance = Stubs(robot)
        instance.register("h", config())
        instance.report("h", worker("h-1"))


def send(channel: grpc.Channel, rpc: Rpc, request: Message, follow_up: Message) -> grpc.StatusCode:
    """The status the request got; a stream is read until it ends or its short deadline."""
    method = rpc.method
    args = {"request_serializer": type(request).SerializeToString,
            "response_deserializer": rpc.response_class().FromString}
    try:
        if method.client_streaming and method.server_streaming:
            for _ in channel.stream_stream(rpc.path, **args)(iter([request, follow_up]), timeout=STREAM_DEADLINE):
                pass
        elif method.server_streaming:
            for _ in channel.unary_stream(rpc.path, **args)(request, timeout=STREAM_DEADLINE):
                pass
        elif method.client_streaming:
            channel.stream_unary(rpc.path, **args)(iter([request, follow_up]), timeout=UNARY_DEADLINE)
        else:
            channel.unary_unary(rpc.path, **args)(request, timeout=UNARY_DEADLINE)
    except grpc.RpcError as error:
        code = error.code()
        if code in FORBIDDEN:
            raise AssertionError(f"{rpc.name}: {code.name}: {error.details()}\nrequest: {str(request)[:2000]}") \
                from None
        return code
    return grpc.StatusCode.OK


def table(counts: dict[str, Counter[str]]) -> str:
    codes = sorted({code for found in counts.values() for code in found})
    rows = [["RPC", "requests", *codes]]
    rows += [[name, str(sum(found.values())), *(str(found.get(code, 0)) for code in codes)]
             for name, found in counts.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def fuzzer(rpc: Rpc, channels: dict[tuple[str, str], grpc.Channel], found: Counter[str]) -> Callable[[], None]:
    """The Hypothesis test of one RPC: each request sent, its code counted."""

    callers = CALLERS_OF.get(rpc.method.containing_service.name, ("admin", "alice"))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(request=requests(rpc), follow_up=requests(rpc), caller=st.sampled_from(callers))
    def fuzz(request: Message, follow_up: Message, caller: str) -> None:
        code = send(channels[(rpc.package, caller)], rpc, request, follow_up)
        found[code.name] += 1

    return fuzz


@pytest.mark.timeout(900)
def test_no_request_gets_internal_or_unknown(mesh: Mesh, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    counts: dict[str, Counter[str]] = {}
    failures: list[str] = []
    with ExitStack() as stack:
        channels = {(package, user): stack.enter_context(sync_channel(address, StaticToken(mesh.tokens[user])))
                    for package, address in mesh.addresses.items() for user in CALLERS}
        for rpc in rpcs():
            found = counts.setdefault(rpc.name, Counter())
            try:
                fuzzer(rpc, channels, found)()
            except AssertionError as failure:
                found["INTERNAL/UNKNOWN"] += 1
                failures.append(str(failure))
    kind = request.node.callspec.params["mesh"]
    report = f"fuzz on {kind}: {EXAMPLES} examples per RPC\n{table(counts)}\n"
    (tmp_path / f"fuzz-{kind}.txt").write_text(report)
    print("\n" + report)
    assert not failures, "\n\n".join(failures)
    assert len(counts) == sum(1 for _ in rpcs()) and all(sum(c.values()) for c in counts.values())
