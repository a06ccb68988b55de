"""The pilot stream, driven message by message against a real server."""

from __future__ import annotations

import time

import grpc
import pytest

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from tests.pilot_stream import PilotStream
from tests.server_support import get_job, submit, wait_for

J = job_pb2.Job
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


def test_jobs_go_highest_priority_first_and_finish(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    low, high = submit(jobs_stub, J(queue="local", command=["a"], priority=1),
                       J(queue="local", command=["b"], priority=50))
    pilot = PilotStream(channel, "pilot-a")
    welcome = pilot.next("welcome").welcome
    assert welcome.heartbeat_interval_seconds == 1
    # The server issues the pilot's id: the name it suggested and a random suffix.
    assert welcome.pilot_id.startswith("pilot-a-") and len(welcome.resume_secret) >= 32
    pilot.request_jobs(1)
    job = pilot.next_job()
    assert (job.job_id, job.state, job.pilot_id) == (high.job_id, J.STATE_SENT, welcome.pilot_id)
    pilot.update(job.job_id, 1, J.STATE_RUNNING)
    seq = pilot.update(job.job_id, 1, J.STATE_FINISHED, exit_code=0)
    ack = pilot.next_ack()
    assert (ack.seq, ack.status.code, ack.state) == (seq, 0, J.STATE_FINISHED)
    assert get_job(jobs_stub, low.job_id).state == J.STATE_ACTIVATED
    pilot.close()


def test_a_final_update_sent_with_the_next_request_is_acknowledged_with_the_next_job(  # type: ignore[no-untyped-def]
    channel, jobs_stub, local_queue
) -> None:
    first, second = submit(jobs_stub, J(queue="local", command=["a"], priority=9), J(queue="local", command=["b"]))
    pilot = PilotStream(channel, "pilot-piggyback")
    pilot.request_jobs(1)
    assert pilot.next_job().job_id == first.job_id
    pilot.update(first.job_id, 1, J.STATE_RUNNING)
    seq = pilot.update_many([dispatch_pb2.JobUpdate(job_id=first.job_id, attempt=1, state=J.STATE_FINISHED)],
                            then_request=1)
    assignments = pilot.next("job_assignments").job_assignments
    assert [job.job_id for job in assignments.jobs] == [second.job_id]
    assert [(a.seq, a.job_id, a.status.code, a.state) for a in assignments.acks] == [
        (seq, first.job_id, 0, J.STATE_FINISHED)]
    assert get_job(jobs_stub, first.job_id).state == J.STATE_FINISHED

    # No job left: the ack comes alone and the request stays open for the next job submitted.
    pilot.update(second.job_id, 1, J.STATE_RUNNING)
    seq = pilot.update_many([dispatch_pb2.JobUpdate(job_id=second.job_id, attempt=1, state=J.STATE_FINISHED)],
                            then_request=1)
    ack = pilot.next_ack()
    assert (ack.seq, ack.job_id, ack.state) == (seq, second.job_id, J.STATE_FINISHED)
    (third,) = submit(jobs_stub, J(queue="local", command=["c"]))
    assert pilot.next_job().job_id == third.job_id
    pilot.close()


def test_stale_attempt_and_forbidden_transition_are_refused(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["x"], max_attempts=2))
    pilot = PilotStream(channel, "pilot-b")
    pilot.request_jobs(1)
    sent = pilot.next_job()
    pilot.update(sent.job_id, 1, J.STATE_RUNNING)
    pilot.update(sent.job_id, 1, J.STATE_FAILED, error_code=1305, error_diag="payload exited with code 1")
    assert pilot.next_ack().state == J.STATE_FAILED
    retried = get_job(jobs_stub, job.job_id)
    assert (retried.state, retried.attempt) == (J.STATE_ACTIVATED, 2)

    # The pilot of attempt 1 speaks again: refused, and attempt 2 is untouched.
    seq = pilot.update(sent.job_id, 1, J.STATE_FINISHED)
    ack = pilot.next_ack()
    assert ack.seq == seq and ack.status.code == FAILED_PRECONDITION
    assert "attempt 1 is stale" in ack.status.message
    assert get_job(jobs_stub, job.job_id).state == J.STATE_ACTIVATED

    pilot.request_jobs(1)
    second = pilot.next_job()
    assert second.attempt == 2
    pilot.update(second.job_id, 2, J.STATE_RUNNING)
    pilot.update(second.job_id, 2, J.STATE_FINISHED)
    assert pilot.next_ack().state == J.STATE_FINISHED
    seq = pilot.update(second.job_id, 2, J.STATE_RUNNING)
    ack = pilot.next_ack()
    assert ack.status.code == FAILED_PRECONDITION and "is finished" in ack.status.message
    final = get_job(jobs_stub, job.job_id)
    assert final.state == J.STATE_FINISHED and final.error_code == 0
    reasons = [e.reason for e in final.history]
    assert "retry: attempt 2 of 2 after error 1305" in reasons
    pilot.close()


def test_unknown_queue_and_missing_hello_end_the_stream(channel, local_queue) -> None:  # type: ignore[no-untyped-def]
    error = PilotStream(channel, "pilot-c", queue_id="atlantis").ended_with()
    assert error is not None and error.code() == grpc.StatusCode.NOT_FOUND
    assert "queue atlantis not found" in error.details()


def test_jobs_only_go_to_pilots_they_fit_and_queues_that_are_online(channel, jobs_stub, queues_stub,
                                                                    local_queue) -> None:  # type: ignore[no-untyped-def]
    (big,) = submit(jobs_stub, J(queue="local", command=["x"], resources=resources_pb2.Resources(cores=8)))
    small_pilot = PilotStream(channel, "pilot-small", cores=2)
    small_pilot.request_jobs(1)
    with pytest.raises(Exception):  # noqa: B017 - queue.Empty: nothing came
        small_pilot.next("job_assignments", timeout=2)
    assert get_job(jobs_stub, big.job_id).state == J.STATE_ACTIVATED
    small_pilot.close()

    queues_stub.UpdateQueue(queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id="local", status=queue_pb2.Queue.STATUS_OFFLINE),
        update_mask={"paths": ["status"]}), timeout=10)
    big_pilot = PilotStream(channel, "pilot-big", cores=16)
    big_pilot.request_jobs(1)
    with pytest.raises(Exception):  # noqa: B017
        big_pilot.next("job_assignments", timeout=4)
    queues_stub.UpdateQueue(queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id="local", status=queue_pb2.Queue.STATUS_ONLINE),
        update_mask={"paths": ["status"]}), timeout=10)
    assert big_pilot.next_job(timeout=10).job_id == big.job_id
    big_pilot.close()


def test_kill_of_a_running_job_goes_down_the_stream(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["sleep", "100"]))
    pilot = PilotStream(channel, "pilot-d")
    pilot.request_jobs(1)
    pilot.next_job()
    pilot.update(job.job_id, 1, J.STATE_RUNNING)
    wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, 10, "running")
    result = jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id], reason="wrong input"),
                                timeout=10).results[0]
    assert result.status.code == 0 and result.state == J.STATE_RUNNING
    command = pilot.next("command").command
    assert (command.job_id, command.attempt, command.kind) == (job.job_id, 1, dispatch_pb2.Command.KIND_KILL)
    assert command.reason == "wrong input"
    pilot.update(job.job_id, 1, J.STATE_CANCELLED, error_code=1144, error_diag="killed on the server's command")
    assert pilot.next_ack().state == J.STATE_CANCELLED
    assert get_job(jobs_stub, job.job_id).state == J.STATE_CANCELLED
    pilot.close()


def test_kill_ends_cancelled_when_the_pilot_never_confirms(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["sleep", "100"], max_attempts=3))
    pilot = PilotStream(channel, "pilot-e")
    pilot.request_jobs(1)
    pilot.next_job()
    pilot.update(job.job_id, 1, J.STATE_RUNNING)
    # Progress is not acknowledged: wait until the server wrote it, or the loop below would end
    # at once on a job still `sent`.
    wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, timeout=30, what="running")
    jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id]), timeout=10)
    pilot.next("command")
    # The pilot keeps heartbeating and ignores the kill: the lease (8 s in tests) runs out.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and get_job(jobs_stub, job.job_id).state == J.STATE_RUNNING:
        pilot.update(job.job_id, 1, J.STATE_RUNNING)
        time.sleep(0.5)
    final = get_job(jobs_stub, job.job_id)
    assert final.state == J.STATE_CANCELLED and final.error_code == 110
    assert final.attempt == 1, "a killed job is not retried"
    pilot.close()


def test_lost_heartbeat_fails_the_attempt_and_retries(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["x"], max_attempts=2))
    pilot = PilotStream(channel, "pilot-f")
    pilot.request_jobs(1)
    pilot.next_job()
    pilot.update(job.job_id, 1, J.STATE_RUNNING)
    # No heartbeat for longer than the 4 s timeout.
    retried = wait_for(jobs_stub, job.job_id, lambda j: j.attempt == 2, 20, "attempt 2")
    assert retried.state == J.STATE_ACTIVATED
    failed = [e for e in retried.history if e.state == J.STATE_FAILED]
    assert failed and failed[0].error_code == 100 and "lost heartbeat" in failed[0].reason
    pilot.close()


def test_heartbeats_keep_a_job_alive(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["x"]))
    pilot = PilotStream(channel, "pilot-g")
    pilot.request_jobs(1)
    pilot.next_job()
    pilot.update(job.job_id, 1, J.STATE_RUNNING)
    for _ in range(14):  # 7 s, beyond the 4 s timeout
        pilot.update(job.job_id, 1, J.STATE_RUNNING, max_rss_mb=123, cpu_seconds=1.5)
        time.sleep(0.5)
    alive = get_job(jobs_stub, job.job_id)
    assert (alive.state, alive.attempt, alive.max_rss_mb) == (J.STATE_RUNNING, 1, 123)
    pilot.close()


def test_jobs_lost_in_flight_go_back_when_the_pilot_reconnects(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    held, lost = submit(jobs_stub, J(queue="local", command=["a"]), J(queue="local", command=["b"]))
    pilot = PilotStream(channel, "pilot-h")
    pilot.request_jobs(2)
    got = pilot.next("job_assignments").job_assignments.jobs
    got = list(got) + ([] if len(got) == 2 else list(pilot.next("job_assignments").job_assignments.jobs))
    assert {j.job_id for j in got} == {held.job_id, lost.job_id}
    pilot.close()
    # Back (as the same pilot: its id and secret) with only one of them: the other never reached
    # it and is activated again.
    again = PilotStream(channel, pilot.pilot_id, held=[(held.job_id, 1)], resume_secret=pilot.resume_secret)
    again.next("welcome")
    wait_for(jobs_stub, lost.job_id, lambda j: j.state == J.STATE_ACTIVATED, 10, "activated")
    assert get_job(jobs_stub, held.job_id).state == J.STATE_SENT
    again.update(held.job_id, 1, J.STATE_RUNNING)
    again.update(held.job_id, 1, J.STATE_FINISHED)
    assert again.next_ack().state == J.STATE_FINISHED
    again.close()


def test_goodbye_gives_back_unstarted_jobs_without_using_an_attempt(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["x"]))
    pilot = PilotStream(channel, "pilot-leaving")
    pilot.request_jobs(1)
    assert pilot.next_job().job_id == job.job_id
    pilot.send(goodbye=dispatch_pb2.Goodbye(reason="lifetime over"))
    back = wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_ACTIVATED, 10, "activated")
    assert back.attempt == 1 and back.pilot_id == ""
    assert back.history[-1].reason == "pilot left before starting the job"
    pilot.close()


def test_a_pilot_with_several_slots_gets_and_reports_jobs_in_batches(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    created = submit(jobs_stub, *[J(queue="local", command=["x"], max_attempts=1) for _ in range(5)])
    pilot = PilotStream(channel, "pilot-multi")
    pilot.request_jobs(5)
    jobs = list(pilot.next("job_assignments").job_assignments.jobs)
    while len(jobs) < 5:
        jobs += pilot.next("job_assignments").job_assignments.jobs
    assert sorted(j.job_id for j in jobs) == sorted(j.job_id for j in created)
    pilot.update_many([dispatch_pb2.JobUpdate(job_id=j.job_id, attempt=1, state=J.STATE_RUNNING) for j in jobs])
    ends = [J.STATE_FINISHED] * 4 + [J.STATE_FAILED]
    seq = pilot.update_many([
        dispatch_pb2.JobUpdate(job_id=j.job_id, attempt=1, state=end, error_code=1305 if end == J.STATE_FAILED else 0)
        for j, end in zip(jobs, ends, strict=True)
    ])
    acks = [pilot.next_ack() for _ in range(5)]
    assert {a.seq for a in acks} == {seq}
    assert {a.job_id: a.state for a in acks} == {j.job_id: e for j, e in zip(jobs, ends, strict=True)}
    assert [get_job(jobs_stub, j.job_id).state for j in jobs] == ends
    pilot.close()


def test_a_batch_with_a_malformed_update_ends_the_stream(channel, jobs_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, J(queue="local", command=["x"]))
    pilot = PilotStream(channel, "pilot-bad-batch")
    pilot.request_jobs(1)
    pilot.next_job()
    pilot.update_many([dispatch_pb2.JobUpdate(job_id=job.job_id, attempt=1, state=J.STATE_RUNNING),
                       dispatch_pb2.JobUpdate(job_id=job.job_id, attempt=1)])
    error = pilot.ended_with()
    assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert get_job(jobs_stub, job.job_id).state == J.STATE_SENT, "nothing of the bad batch was applied"
