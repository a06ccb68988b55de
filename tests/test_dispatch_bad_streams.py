"""One bad stream never stalls everyone: a Hello or an update with a bad field (a pilot id longer
than its column, NUL bytes, a negative job id, a state out of range, a CPU time that is not a
number, a request for two billion jobs) ends that stream alone with INVALID_ARGUMENT naming the
field, and the dispatch rounds go on for every other pilot: a healthy pilot's jobs finish while
the bad streams come and go. A real server and pilot, on both databases."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2, queue_pb2, queue_service_pb2
from tests.pilot_stream import PilotStream
from tests.server_support import submit, wait_for

J = job_pb2.Job


def _field(error: grpc.RpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, error
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError(f"no BadRequest in {status}")


def _holding_a_job(channel: grpc.Channel) -> tuple[PilotStream, J]:
    """A stream of queue poison that holds one of its jobs."""
    stream = PilotStream(channel, "poison", queue_id="poison")
    stream.request_jobs(1)
    return stream, stream.next_job()


def _long_pilot_id(channel: grpc.Channel) -> PilotStream:
    stream = PilotStream(channel, "p" * 300, queue_id="poison")
    stream.request_jobs(1)
    return stream


def _nul_in_node(channel: grpc.Channel) -> PilotStream:
    return PilotStream(channel, "nul-node", queue_id="poison", node="node\x00one")


def _update(**fields: object) -> Callable[[grpc.Channel], PilotStream]:
    def send(channel: grpc.Channel) -> PilotStream:
        stream, job = _holding_a_job(channel)
        update = {"job_id": job.job_id, "attempt": job.attempt, "state": J.STATE_RUNNING, **fields}
        stream.update_many([dispatch_pb2.JobUpdate(**update)])  # type: ignore[arg-type]
        return stream
    return send


def _huge_request(channel: grpc.Channel) -> PilotStream:
    stream = PilotStream(channel, "greedy", queue_id="poison")
    stream.request_jobs(2**31 - 1)
    return stream


BAD_STREAMS: list[tuple[str, Callable[[grpc.Channel], PilotStream]]] = [
    ("hello.pilot_id", _long_pilot_id),
    ("hello.node", _nul_in_node),
    ("job_updates.updates[0].job_id", _update(job_id=-5)),
    ("job_updates.updates[0].state", _update(state=99)),
    ("job_updates.updates[0].error_diag", _update(state=J.STATE_FAILED, error_code=1305, error_diag="bad\x00diag")),
    ("job_updates.updates[0].cpu_seconds", _update(cpu_seconds=float("nan"))),
    ("request_jobs.count", _huge_request),
]


def test_bad_streams_end_alone_and_a_healthy_pilots_jobs_finish(  # type: ignore[no-untyped-def]
    channel, jobs_stub, queues_stub, local_queue, start_pilot
) -> None:
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
        queue=queue_pb2.Queue(queue_id="poison", status=queue_pb2.Queue.STATUS_ONLINE)), timeout=10)
    submit(jobs_stub, *[J(queue="poison", command=["x"]) for _ in range(100)])
    healthy = submit(jobs_stub, *[J(queue="local", command=["/bin/sh", "-c", "sleep 0.5"], max_attempts=1)
                                  for _ in range(8)])
    start_pilot()
    ended: list[tuple[str, str]] = []
    started = time.monotonic()
    while time.monotonic() - started < 8:  # the bad streams come and go while the jobs run
        for field, bad in BAD_STREAMS:
            stream = bad(channel)
            error = stream.ended_with()
            assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error)
            ended.append((field, _field(error)))
            stream.close()
        time.sleep(0.5)
    assert all(expected == named for expected, named in ended), ended
    for job in healthy:
        done = wait_for(jobs_stub, job.job_id, timeout=30)
        assert (done.state, done.attempt) == (J.STATE_FINISHED, 1), done.error_diag
