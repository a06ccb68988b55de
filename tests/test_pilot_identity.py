"""A pilot is who its token says: the server issues each pilot its id with a resume secret; a
stream claiming a pilot's id without that secret, or under another token subject, is refused;
an update for a job not sent to the stream's pilot, or of a queue its token does not name, is
refused in its ack, logged, and changes nothing. A real server and pilot, hostile streams over
real sockets, on both databases."""

from __future__ import annotations

import socket

import grpc
import pytest

from panda.server.v1 import job_pb2, queue_pb2, queue_service_pb2
from tests.pilot_stream import PilotStream
from tests.server_support import get_job, submit, wait_for
from tests.test_auth import Forger
from tools.cluster import IdentityHandle, ServerHandle

J = job_pb2.Job
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]


def _pilot_token(identity: IdentityHandle, subject: str, queues: list[str]) -> str:
    """A pilot robot's token, signed with the identity service's own key."""
    return Forger(identity).signed(sub=subject, **{"wlcg.groups": ["/panda/pilot"], "panda.queues": queues})


def _add_queue(queues_stub, name: str) -> None:  # type: ignore[no-untyped-def]
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
        queue=queue_pb2.Queue(queue_id=name, status=queue_pb2.Queue.STATUS_ONLINE)), timeout=10)


def _refused(stream: PilotStream) -> grpc.RpcError:
    error = stream.ended_with()
    assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED, error
    return error


def test_a_hostile_pilot_can_neither_become_a_running_pilot_nor_fail_its_job(  # type: ignore[no-untyped-def]
    server: ServerHandle, identity: IdentityHandle, channel, jobs_stub, queues_stub, local_queue, start_pilot
) -> None:
    _add_queue(queues_stub, "other")
    (job,) = submit(jobs_stub, J(queue="local", command=["/bin/sh", "-c", "sleep 5"], max_attempts=2))
    start_pilot()
    running = wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    victim = running.pilot_id
    # Issued by the server: the name the pilot suggested (host-pid-random) and a random suffix.
    assert victim.startswith(f"{socket.gethostname()}-") and victim.count("-") >= 3

    # A pilot token of another queue claims the running pilot's id: without its secret, with a
    # guessed one. Refused before anything happens to the real pilot's stream.
    other_queue = _pilot_token(identity, "mallory-pilot", ["other"])
    _refused(PilotStream(channel, victim, queue_id="other", token=other_queue))
    _refused(PilotStream(channel, victim, queue_id="other", token=other_queue, resume_secret="guessed" * 6))
    # The same, with a token of the pilot's own queue.
    same_queue = _pilot_token(identity, "mallory-local", ["local"])
    _refused(PilotStream(channel, victim, token=same_queue))

    # Streams of their own, forging the end of the job: each refused in its ack, and logged.
    refusals = []
    for token, queue, subject in ((other_queue, "other", "mallory-pilot"), (same_queue, "local", "mallory-local")):
        hostile = PilotStream(channel, "mallory", queue_id=queue, token=token)
        assert hostile.pilot_id != victim
        seq = hostile.update(job.job_id, 1, J.STATE_FAILED, error_code=1305, error_diag="forged")
        ack = hostile.next_ack()
        assert (ack.seq, ack.job_id, ack.status.code) == (seq, job.job_id, PERMISSION_DENIED)
        assert f"was not sent to pilot {hostile.pilot_id}" in ack.status.message
        refusals.append(f"refused an update of pilot {hostile.pilot_id} ({subject}, queue {queue}) "
                        f"for job {job.job_id}")
        hostile.close()
    still = get_job(jobs_stub, job.job_id)
    assert (still.state, still.attempt, still.pilot_id) == (J.STATE_RUNNING, 1, victim)

    # The real pilot was never disturbed: its payload ran to its end.
    done = wait_for(jobs_stub, job.job_id, timeout=60)
    assert (done.state, done.attempt, done.pilot_id, done.error_diag) == (J.STATE_FINISHED, 1, victim, "")
    assert J.STATE_FAILED not in [e.state for e in done.history]
    log = server.log()
    assert f"refused a stream of mallory-pilot (queue other, node test-node) claiming pilot {victim}" in log
    assert all(refusal in log for refusal in refusals), refusals


def test_a_pilot_resumes_its_identity_only_with_its_secret_under_its_token_subject(  # type: ignore[no-untyped-def]
    identity: IdentityHandle, channel, jobs_stub, local_queue
) -> None:
    (job,) = submit(jobs_stub, J(queue="local", command=["x"]))
    first = PilotStream(channel, "pilot-r")
    first.request_jobs(1)
    assert first.next_job().job_id == job.job_id
    pilot_id, secret = first.pilot_id, first.resume_secret
    first.close()

    # Its id and its secret, but another robot's token (of the same queue): refused.
    stranger = _pilot_token(identity, "another-site-robot", ["local"])
    _refused(PilotStream(channel, pilot_id, held=[(job.job_id, 1)], token=stranger, resume_secret=secret))
    # Its own token, the id and the secret: the same pilot, holding its job.
    again = PilotStream(channel, pilot_id, held=[(job.job_id, 1)], resume_secret=secret)
    assert (again.pilot_id, again.resume_secret) == (pilot_id, secret)
    again.update(job.job_id, 1, J.STATE_RUNNING)
    again.update(job.job_id, 1, J.STATE_FINISHED)
    assert again.next_ack().state == J.STATE_FINISHED
    again.close()


def test_updates_for_jobs_of_queues_the_token_does_not_name_are_refused(  # type: ignore[no-untyped-def]
    server: ServerHandle, identity: IdentityHandle, channel, jobs_stub, queues_stub, local_queue
) -> None:
    _add_queue(queues_stub, "other")
    (job,) = submit(jobs_stub, J(queue="other", command=["x"]))
    both = _pilot_token(identity, "site-robot", ["local", "other"])
    pilot = PilotStream(channel, "pilot-q", queue_id="other", token=both)
    pilot.request_jobs(1)
    assert pilot.next_job().job_id == job.job_id
    pilot.close()

    # The same robot, now with a token that no longer names queue other, resumes the pilot.
    local_only = _pilot_token(identity, "site-robot", ["local"])
    again = PilotStream(channel, pilot.pilot_id, held=[(job.job_id, 1)], token=local_only,
                        resume_secret=pilot.resume_secret)
    assert again.pilot_id == pilot.pilot_id
    again.update(job.job_id, 1, J.STATE_RUNNING)
    ack = again.next_ack()
    assert ack.status.code == PERMISSION_DENIED
    assert f"is of queue other, which the token of pilot {pilot.pilot_id} does not name" in ack.status.message
    assert get_job(jobs_stub, job.job_id).state == J.STATE_SENT
    again.close()
    assert f"refused an update of pilot {pilot.pilot_id} (site-robot, queue local)" in server.log()


@pytest.mark.parametrize("secret", ["", "not-the-secret"])
def test_a_new_stream_cannot_take_an_issued_id(channel, jobs_stub, local_queue, secret: str) -> None:  # type: ignore[no-untyped-def]
    first = PilotStream(channel, "pilot-s")
    issued = first.pilot_id
    # The same robot, the same queue, the issued id: without its secret, someone else.
    _refused(PilotStream(channel, issued, resume_secret=secret))
    # The first stream goes on as before.
    (job,) = submit(jobs_stub, J(queue="local", command=["x"]))
    first.request_jobs(1)
    assert (first.next_job().job_id, get_job(jobs_stub, job.job_id).pilot_id) == (job.job_id, issued)
    first.close()
