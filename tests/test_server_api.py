"""JobService and QueueService over real gRPC: submit, get, list, kill, reassign, watch,
and bad input answered with the right status while nothing stored changes."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from tests.server_support import ensure_storage_element, get_job, submit

J = job_pb2.Job


def sleeper(queue: str = "local", **fields: object) -> J:
    return J(queue=queue, command=["sleep", "1"], **fields)  # type: ignore[arg-type]


def all_jobs(stub) -> list[J]:  # type: ignore[no-untyped-def]
    return list(stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000), timeout=10).jobs)


def test_submit_get_and_defaults(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["echo", "hi"], priority=5,
                                 files=[job_pb2.JobFile(lfn="out.txt", kind=job_pb2.JobFile.KIND_OUTPUT)]))
    fetched = get_job(jobs_stub, job.job_id)
    assert fetched.name == f"jobs/{job.job_id}"
    assert fetched.state == J.STATE_ACTIVATED
    assert fetched.attempt == 1 and fetched.max_attempts == 3
    assert fetched.resources.cores == 1 and fetched.resources.memory_mb > 0
    assert fetched.files[0].status == job_pb2.JobFile.STATUS_DEFINED
    assert fetched.files[0].storage_element == "local"
    assert fetched.files[0].storage_url.startswith("file://")
    assert [e.reason for e in fetched.history] == ["submitted"]


def test_submit_is_idempotent_with_a_request_id(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    request = job_service_pb2.SubmitJobsRequest(jobs=[sleeper(), sleeper()], request_id="req-1")
    first = jobs_stub.SubmitJobs(request, timeout=10).jobs
    second = jobs_stub.SubmitJobs(request, timeout=10).jobs
    assert [j.job_id for j in first] == [j.job_id for j in second]
    assert len(all_jobs(jobs_stub)) == 2


def test_list_filters_and_pages(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    created = submit(jobs_stub, *[sleeper(priority=i) for i in range(7)])
    jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[created[0].job_id]), timeout=10)
    seen: list[int] = []
    token = ""
    while True:
        page = jobs_stub.ListJobs(
            job_service_pb2.ListJobsRequest(page_size=3, page_token=token, filter="state = ACTIVATED"), timeout=10
        )
        assert page.total_size == 6
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted((j.job_id for j in created[1:]), reverse=True)
    cancelled = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(filter="state = cancelled"), timeout=10)
    assert [j.job_id for j in cancelled.jobs] == [created[0].job_id]
    by_priority = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(filter="priority >= 5"), timeout=10)
    assert {j.priority for j in by_priority.jobs} == {5, 6}


def test_kill_queued_job_is_cancelled_at_once_and_twice_refused(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, sleeper())
    result = jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id, 999999]), timeout=10)
    ok, missing = result.results
    assert ok.status.code == grpc.StatusCode.OK.value[0] and ok.state == J.STATE_CANCELLED
    assert missing.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    again = jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id]), timeout=10).results[0]
    assert again.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "already cancelled" in again.status.message
    assert get_job(jobs_stub, job.job_id).state == J.STATE_CANCELLED


def test_reassign_moves_queued_jobs_only(jobs_stub, queues_stub, local_queue, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ensure_storage_element(queues_stub.storage, tmp_path / "other-se")
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
        queue=queue_pb2.Queue(queue_id="other", storage_element="other-se")), timeout=10)
    (job,) = submit(jobs_stub, J(queue="local", command=["true"],
                                 files=[job_pb2.JobFile(lfn="o.txt", kind=job_pb2.JobFile.KIND_OUTPUT)]))
    result = jobs_stub.ReassignJobs(job_service_pb2.ReassignJobsRequest(job_ids=[job.job_id], queue="other"),
                                    timeout=10).results[0]
    assert result.status.code == 0
    moved = get_job(jobs_stub, job.job_id)
    assert moved.queue == "other"
    assert moved.files[0].storage_element == "other-se"
    assert "reassigned from local to other" in moved.history[-1].reason
    with pytest.raises(grpc.RpcError) as raised:
        jobs_stub.ReassignJobs(job_service_pb2.ReassignJobsRequest(job_ids=[job.job_id], queue="nowhere"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_watch_resumes_from_a_cursor(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    first, second = submit(jobs_stub, sleeper(), sleeper())
    stream = jobs_stub.WatchJobs(job_service_pb2.WatchJobsRequest(), timeout=10)
    events = [next(stream).event for _ in range(2)]
    stream.cancel()
    assert [e.job_id for e in events] == [first.job_id, second.job_id]
    jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[second.job_id]), timeout=10)
    resumed = jobs_stub.WatchJobs(job_service_pb2.WatchJobsRequest(after_cursor=events[-1].cursor), timeout=10)
    event = next(resumed).event
    resumed.cancel()
    assert (event.job_id, event.state, event.previous_state) == (second.job_id, J.STATE_CANCELLED, J.STATE_ACTIVATED)


# -- bad input: the right code, and nothing stored changes --------------------------------

def _details(error: grpc.RpcError) -> list[object]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found = []
    for detail in status.details if status else []:
        for kind in (error_details_pb2.BadRequest, error_details_pb2.ResourceInfo,
                     error_details_pb2.PreconditionFailure):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found.append(message)
    return found


@pytest.mark.parametrize(
    ("job", "code", "text"),
    [
        (J(queue="nowhere", command=["true"]), grpc.StatusCode.NOT_FOUND, "queue nowhere not found"),
        (J(queue="local"), grpc.StatusCode.INVALID_ARGUMENT, "command is empty"),
        (J(queue="local", command=["true"], max_attempts=1000), grpc.StatusCode.INVALID_ARGUMENT, "max_attempts"),
        (J(queue="local", command=["true"], resources=resources_pb2.Resources(cores=-2)),
         grpc.StatusCode.INVALID_ARGUMENT, "cores is negative"),
        (J(queue="local", command=["true"], files=[job_pb2.JobFile(lfn="../etc/passwd",
                                                                   kind=job_pb2.JobFile.KIND_INPUT)]),
         grpc.StatusCode.INVALID_ARGUMENT, "logical file name"),
        (J(queue="local", command=["true"], files=[job_pb2.JobFile(lfn="a", kind=job_pb2.JobFile.KIND_INPUT,
                                                                   adler32="XYZ")]),
         grpc.StatusCode.INVALID_ARGUMENT, "adler32"),
        (J(queue="bad queue!", command=["true"]), grpc.StatusCode.INVALID_ARGUMENT, "queue id"),
    ],
)
def test_bad_submissions_store_nothing(jobs_stub, local_queue, job, code, text) -> None:  # type: ignore[no-untyped-def]
    (existing,) = submit(jobs_stub, sleeper())
    with pytest.raises(grpc.RpcError) as raised:
        # A good job beside the bad one: the batch is all or nothing.
        submit(jobs_stub, sleeper(), job)
    assert raised.value.code() == code
    assert text in raised.value.details()
    assert _details(raised.value), "a client can act on google.rpc details"
    assert [j.job_id for j in all_jobs(jobs_stub)] == [existing.job_id]
    assert get_job(jobs_stub, existing.job_id).state == J.STATE_ACTIVATED


def test_unknown_job_is_not_found(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        get_job(jobs_stub, 424242)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "job 424242 not found" in raised.value.details()


def test_oversized_message_is_refused(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    huge = J(queue="local", command=["echo", "x" * (17 * 1024 * 1024)])
    with pytest.raises(grpc.RpcError) as raised:
        submit(jobs_stub, huge)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert all_jobs(jobs_stub) == []


def test_bad_list_requests(jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    for request, text in [
        (job_service_pb2.ListJobsRequest(filter="colour = red"), "unknown filter field"),
        (job_service_pb2.ListJobsRequest(page_token="nonsense"), "page_token"),
        (job_service_pb2.ListJobsRequest(page_size=-5), "page_size"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            jobs_stub.ListJobs(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert text in raised.value.details()


def test_queue_registry(queues_stub, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ensure_storage_element(queues_stub.storage, tmp_path / "a")
    created = queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id="site-a", max_resources=resources_pb2.Resources(cores=8, memory_mb=16000),
        storage_element="a")), timeout=10).queue
    assert created.status == queue_pb2.Queue.STATUS_ONLINE
    with pytest.raises(grpc.RpcError) as raised:
        queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(queue_id="site-a")),
                                timeout=10)
    assert raised.value.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = queues_stub.UpdateQueue(queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id="site-a", status=queue_pb2.Queue.STATUS_OFFLINE),
        update_mask={"paths": ["status"]}), timeout=10).queue
    assert updated.status == queue_pb2.Queue.STATUS_OFFLINE
    assert updated.max_resources.cores == 8, "fields outside the mask are kept"
    with pytest.raises(grpc.RpcError) as raised:
        queues_stub.GetQueue(queue_service_pb2.GetQueueRequest(queue_id="site-b"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as raised:
        queues_stub.UpdateQueue(queue_service_pb2.UpdateQueueRequest(
            queue=queue_pb2.Queue(queue_id="site-a"), update_mask={"paths": ["queue_id"]}), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    listed = queues_stub.ListQueues(queue_service_pb2.ListQueuesRequest(
        status=queue_pb2.Queue.STATUS_OFFLINE), timeout=10).queues
    assert [q.queue_id for q in listed] == ["site-a"]


def test_job_larger_than_its_queue_is_refused(jobs_stub, queues_stub) -> None:  # type: ignore[no-untyped-def]
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id="small", max_resources=resources_pb2.Resources(memory_mb=1000))), timeout=10)
    with pytest.raises(grpc.RpcError) as raised:
        submit(jobs_stub, J(queue="small", command=["true"], resources=resources_pb2.Resources(memory_mb=4000)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queue small takes at most 1000" in raised.value.details()
