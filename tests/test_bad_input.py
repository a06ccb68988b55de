"""Bad input is INVALID_ARGUMENT naming the field (google.rpc BadRequest), never INTERNAL and
never the database's words; nothing is stored, and the service logs one line without a
traceback. The inputs that gave INTERNAL before, over real sockets on both databases."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.jedi.v1 import dataset_pb2, dataset_service_pb2, task_pb2, task_service_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from panda_runtime.service.pagination import encode_token
from tests.jedi_support import JediHandle, register_dataset, task_params
from tools.cluster import ServerHandle

pytest_plugins = ["tests.jedi_fixtures"]

J = job_pb2.Job
F = job_pb2.JobFile
M = TypeVar("M", bound=Message)
# What a message must never carry: the database's words.
DATABASE_WORDS = ("SQL", "sqlite", "psycopg", "INSERT", "SELECT", "Traceback")


def token(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def crafted_tokens(query: str) -> dict[str, str]:
    """Page tokens a client made up, in the token's own shape (so that only their content is wrong)."""
    return {
        "p is a list": encode_token([], query),  # type: ignore[arg-type]  # what a client may forge
        "before is text": encode_token({"before": "abc"}, query),
        "before beyond 64 bits": encode_token({"before": 10**30}, query),
        "after is negative": encode_token({"after": -1}, query),
        "nested a thousand deep": token(b"[" * 100_000 + b"]" * 100_000),
        "not base64": "%%%",
    }


FILTERS = {
    "truncated \\x escape": 'label = "\\x"',
    "truncated \\u escape": 'label = "\\u12"',
    "a number beyond 64 bits": "job_id = 99999999999999999999999",
    "a number beyond a 32-bit column": "priority = -9223372036854775808",
    "a NUL escape": 'label = "a\\x00b"',
    "a lone surrogate": 'label = "\\ud800"',
}


def changed(message: M, **fields: object) -> M:
    """A copy of `message` with `fields` set anew (lists, maps and messages replaced whole)."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in fields:
        copy.ClearField(name)
    copy.MergeFrom(type(message)(**fields))
    return copy


def rejected(call: Callable[..., object], request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        result = call(request, timeout=15)
        if not hasattr(result, "ListFields"):
            list(result)  # type: ignore[call-overload]  # a stream: read it to get its status
    return raised.value


def bad_request_fields(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # the call's error carries its trailers
    assert status is not None, "a status with details"
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            found += [v.field for v in request.field_violations]
    return found


def assert_invalid(error: grpc.RpcError, field: str, what: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{what}: {error.code()} {error.details()}"
    assert any(f.startswith(field) for f in bad_request_fields(error)), f"{what}: {bad_request_fields(error)}"
    assert not any(word in (error.details() or "") for word in DATABASE_WORDS), f"{what}: {error.details()}"


def assert_logged_without_traceback(log: str, method: str, count: int) -> None:
    lines = [line for line in log.splitlines() if f"/{method}: INVALID_ARGUMENT" in line]
    assert len(lines) >= count, f"{method}: {len(lines)} log line(s) of {count} refusals"
    assert "Traceback" not in log and " ERROR " not in log


BAD_JOBS = {
    "NUL in a command": (J(queue="local", command=["ec\x00ho"]), "jobs[1].command"),
    "NUL in a label": (J(queue="local", command=["true"], label="a\x00b"), "jobs[1].label"),
    "NUL in an environment value": (J(queue="local", command=["true"], environment={"X": "a\x00"}),
                                    "jobs[1].environment"),
    "NUL in a file name": (J(queue="local", command=["true"], files=[F(lfn="a\x00", kind=F.KIND_INPUT)]),
                           "jobs[1].files[0].lfn"),
    "a label of 300": (J(queue="local", command=["true"], label="x" * 300), "jobs[1].label"),
    "a storage element of 2,000": (J(queue="local", command=["true"], files=[F(
        lfn="in.txt", kind=F.KIND_INPUT, storage_element="file:///" + "x" * 2000)]),
        "jobs[1].files[0].storage_element"),
    "'.' as a file name": (J(queue="local", command=["true"], files=[F(lfn=".", kind=F.KIND_OUTPUT)]),
                           "jobs[1].files[0].lfn"),
    "'..' as a file name": (J(queue="local", command=["true"], files=[F(lfn="..", kind=F.KIND_INPUT)]),
                            "jobs[1].files[0].lfn"),
    "'A=B' as an environment key": (J(queue="local", command=["true"], environment={"A=B": "c"}),
                                    "jobs[1].environment"),
}


def test_the_servers_bad_inputs_are_invalid_arguments_and_store_nothing(server: ServerHandle, jobs_stub,  # type: ignore[no-untyped-def]
                                                                        queues_stub, local_queue) -> None:
    (existing,) = jobs_stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(
        jobs=[J(queue="local", command=["true"])]), timeout=10).jobs
    good = J(queue="local", command=["true"])
    for what, (job, field) in BAD_JOBS.items():
        # Beside a good job: the batch is all or nothing.
        error = rejected(jobs_stub.SubmitJobs, job_service_pb2.SubmitJobsRequest(jobs=[good, job]))
        assert_invalid(error, field, what)
    for what, page_token in crafted_tokens("").items():
        assert_invalid(rejected(jobs_stub.ListJobs, job_service_pb2.ListJobsRequest(page_token=page_token)),
                       "page_token", what)
    for what, text in FILTERS.items():
        assert_invalid(rejected(jobs_stub.ListJobs, job_service_pb2.ListJobsRequest(filter=text)), "filter", what)
    error = rejected(jobs_stub.WatchJobs, job_service_pb2.WatchJobsRequest(job_ids=range(1, 100_001), from_now=True))
    assert_invalid(error, "job_ids", "WatchJobs with 100,000 ids")
    assert "at most 10,000" in (error.details() or "")
    assert_invalid(rejected(jobs_stub.KillJobs, job_service_pb2.KillJobsRequest(
        job_ids=[existing.job_id], reason="a\x00b")), "reason", "NUL in a kill reason")
    assert_invalid(rejected(queues_stub.CreateQueue, queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id="q2", description="a\x00b"))), "queue.description", "NUL in a queue description")
    assert_invalid(rejected(queues_stub.CreateQueue, queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id="q3", storage_element="file:///" + "x" * 2000))), "queue.storage_element", "a long storage element")

    listed = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10)
    assert [j.job_id for j in listed.jobs] == [existing.job_id], "nothing was stored"
    assert jobs_stub.GetJob(job_service_pb2.GetJobRequest(job_id=existing.job_id), timeout=10).job.state == \
        J.STATE_ACTIVATED, "nothing was killed"
    assert [q.queue_id for q in queues_stub.ListQueues(queue_service_pb2.ListQueuesRequest(), timeout=10).queues] == \
        ["local"], "no queue stored"
    log = server.log()
    assert_logged_without_traceback(log, "SubmitJobs", len(BAD_JOBS))
    assert_logged_without_traceback(log, "ListJobs", len(FILTERS) + len(crafted_tokens("")))
    assert_logged_without_traceback(log, "WatchJobs", 1)


def test_jedis_bad_inputs_are_invalid_arguments_and_store_nothing(jedi: JediHandle, tasks_stub, datasets_stub,  # type: ignore[no-untyped-def]
                                                                  local_queue, storage_dir: Path) -> None:
    register_dataset(datasets_stub, "bad.in", storage_dir, 1)
    good = task_params("bad", ["bad.in"], "bad.out", "true", scout_jobs=0)
    bad_tasks: dict[str, tuple[dict[str, object], str]] = {
        "NUL in a task name": ({"task_name": "a\x00b"}, "params.task_name"),
        "NUL in the transformation": ({"transformation": ["ec\x00ho"]}, "params.transformation"),
        "NUL in an environment value": ({"environment": {"X": "a\x00"}}, "params.environment"),
        "'A=B' as an environment key": ({"environment": {"A=B": "c"}}, "params.environment"),
        "NUL in a working group": ({"working_group": "\x00"}, "params.working_group"),
        "gb_per_job NaN": ({"split_rule": task_pb2.SplitRule(gb_per_job=math.nan)}, "params.split_rule"),
        "gb_per_job infinite": ({"split_rule": task_pb2.SplitRule(gb_per_job=math.inf)}, "params.split_rule"),
        "gb_per_job negative": ({"split_rule": task_pb2.SplitRule(gb_per_job=-1.0)}, "params.split_rule"),
        "events_per_job beyond a double's whole numbers": (
            {"split_rule": task_pb2.SplitRule(events_per_job=2**63 - 1)}, "params.split_rule"),
        "max_failure_rate NaN": ({"max_failure_rate": math.nan}, "params.max_failure_rate"),
        "negative memory": ({"resources": {"memory_mb": -1}}, "params.resources.memory_mb"),
        "output names with a space": ({"output_file_pattern": "{dataset} {serial}"}, "params.output_file_pattern"),
        "an output pattern of a gigabyte": ({"output_file_pattern": "{dataset}{task_id:>999999999}{serial}"},
                                            "params.output_file_pattern"),
    }
    for what, (change, field) in bad_tasks.items():
        request = task_service_pb2.SubmitTaskRequest(params=changed(good, **change))
        assert_invalid(rejected(tasks_stub.SubmitTask, request), field, what)

    ok = dataset_pb2.DatasetFile(lfn="a", size_bytes=1, adler32="00620062", storage_elements=["se1"])
    bad_files = {
        "a file name with a space": (dict(lfn="a b"), "files[0].lfn"),
        "NUL in a file name": (dict(lfn="a\x00b"), "files[0].lfn"),
        "'..' as a file name": (dict(lfn=".."), "files[0].lfn"),
        "NUL in a storage element": (dict(storage_elements=["se1\x00"]), "files[0].storage_elements"),
    }
    for what, (change, field) in bad_files.items():
        assert_invalid(rejected(datasets_stub.RegisterDataset, dataset_service_pb2.RegisterDatasetRequest(
            dataset=dataset_pb2.Dataset(dataset_id="bad.files"), files=[changed(ok, **change)])), field, what)
    for what, page_token in crafted_tokens("").items():
        assert_invalid(rejected(tasks_stub.ListTasks, task_service_pb2.ListTasksRequest(page_token=page_token)),
                       "page_token", what)
        assert_invalid(rejected(datasets_stub.ListDatasets, dataset_service_pb2.ListDatasetsRequest(
            page_token=page_token)), "page_token", what)
    for what, page_token in crafted_tokens("bad.in|0").items():
        assert_invalid(rejected(datasets_stub.ListDatasetFiles, dataset_service_pb2.ListDatasetFilesRequest(
            dataset_id="bad.in", page_token=page_token)), "page_token", what)
    for what, text in {"truncated \\x escape": 'task_name = "\\x"', "a number beyond 64 bits": "task_id > 1e99",
                       "an id beyond 64 bits": "task_id = 99999999999999999999"}.items():
        assert_invalid(rejected(tasks_stub.ListTasks, task_service_pb2.ListTasksRequest(filter=text)), "filter", what)

    assert tasks_stub.ListTasks(task_service_pb2.ListTasksRequest(), timeout=10).total_size == 0, "no task stored"
    listed = datasets_stub.ListDatasets(dataset_service_pb2.ListDatasetsRequest(), timeout=10)
    assert [d.dataset_id for d in listed.datasets] == ["bad.in"], "no dataset stored"
    log = jedi.log()
    assert_logged_without_traceback(log, "SubmitTask", len(bad_tasks))
    assert_logged_without_traceback(log, "RegisterDataset", len(bad_files))
