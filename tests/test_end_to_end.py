"""Real server, real pilot processes, real payloads and a POSIX storage element."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import zlib
from pathlib import Path

import psutil

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2, job_service_pb2
from tests.server_support import get_job, submit, wait_for

J = job_pb2.Job
F = job_pb2.JobFile
# The scope of the test admin's files: they are at <element>/user.admin/<lfn>.
ADMIN = "user.admin"


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def shell(script: str, **fields: object) -> J:
    return J(queue="local", command=["/bin/sh", "-c", script], **fields)  # type: ignore[arg-type]


def test_job_runs_stages_in_and_out_and_finishes(jobs_stub, local_queue, storage_dir, start_pilot) -> None:  # type: ignore[no-untyped-def]
    data = b"event data\n" * 1000
    (storage_dir / ADMIN).mkdir()
    (storage_dir / ADMIN / "input.dat").write_bytes(data)
    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    (job,) = submit(jobs_stub, shell(
        'wc -c < input.dat > result.txt && echo "job $PANDA_JOB_ID attempt $PANDA_ATTEMPT" >> result.txt',
        files=[F(lfn="input.dat", kind=F.KIND_INPUT, size_bytes=len(data), adler32=checksum),
               F(lfn="result.txt", kind=F.KIND_OUTPUT)],
    ))
    start_pilot()
    done = wait_for(jobs_stub, job.job_id)
    assert done.state == J.STATE_FINISHED, done.error_diag
    stored = storage_dir / ADMIN / "result.txt"
    assert stored.read_text() == f"{len(data)}\njob {job.job_id} attempt 1\n"
    output = next(f for f in done.files if f.kind == F.KIND_OUTPUT)
    assert output.status == F.STATUS_READY
    assert (output.size_bytes, output.adler32) == (stored.stat().st_size, adler32_of(stored))
    assert done.exit_code == 0 and done.node and done.pilot_id
    states = [e.state for e in done.history]
    assert states[:2] == [J.STATE_ACTIVATED, J.STATE_SENT]
    assert J.STATE_RUNNING in states and states[-1] == J.STATE_FINISHED


def test_payload_failure_maps_to_the_pilot_code(jobs_stub, local_queue, start_pilot) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell("echo 'segment 7 is corrupt' >&2; exit 3", max_attempts=1))
    start_pilot()
    failed = wait_for(jobs_stub, job.job_id)
    assert failed.state == J.STATE_FAILED
    assert (failed.error_code, failed.exit_code) == (1305, 3)
    assert "segment 7 is corrupt" in failed.log_tail
    assert failed.attempt == 1


def test_failed_attempts_are_retried_up_to_max_attempts(jobs_stub, local_queue, start_pilot) -> None:  # type: ignore[no-untyped-def]
    # Fails on attempts 1 and 2, succeeds on 3.
    (job,) = submit(jobs_stub, shell('test "$PANDA_ATTEMPT" -ge 3', max_attempts=3))
    start_pilot()
    done = wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_FINISHED, 60, "finished")
    assert done.attempt == 3
    assert [e.attempt for e in done.history if e.state == J.STATE_FAILED] == [1, 2]


def test_corrupt_input_fails_stage_in(jobs_stub, local_queue, storage_dir, start_pilot) -> None:  # type: ignore[no-untyped-def]
    (storage_dir / ADMIN).mkdir()
    (storage_dir / ADMIN / "input.dat").write_bytes(b"abc")
    (job,) = submit(jobs_stub, shell("cat input.dat", max_attempts=1,
                                     files=[F(lfn="input.dat", kind=F.KIND_INPUT, size_bytes=3, adler32="deadbeef")]))
    start_pilot()
    failed = wait_for(jobs_stub, job.job_id)
    assert failed.state == J.STATE_FAILED and failed.error_code == 1171, failed.error_diag


def test_walltime_limit_kills_the_payload(jobs_stub, local_queue, start_pilot) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell("sleep 60", max_attempts=1,
                                     resources=resources_pb2.Resources(walltime_seconds=2)))
    start_pilot()
    failed = wait_for(jobs_stub, job.job_id, timeout=40)
    assert failed.state == J.STATE_FAILED and failed.error_code == 1213, failed.error_diag


def _payload_pid(job: J, workdir_root: Path) -> int:
    """The payload writes its PID to a file in its work dir."""
    for path in workdir_root.rglob("payload.pid"):
        return int(path.read_text())
    raise AssertionError("payload did not start")


def test_kill_of_a_running_job(jobs_stub, local_queue, start_pilot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell("echo $$ > payload.pid; exec sleep 300"))
    start_pilot()
    wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    deadline = time.monotonic() + 10
    while not list((tmp_path / "pilots").rglob("payload.pid")) and time.monotonic() < deadline:
        time.sleep(0.1)
    payload_pid = _payload_pid(job, tmp_path / "pilots")
    assert psutil.pid_exists(payload_pid)
    jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[job.job_id], reason="user asked"), timeout=10)
    killed = wait_for(jobs_stub, job.job_id, timeout=30)
    assert killed.state == J.STATE_CANCELLED
    assert killed.attempt == 1
    deadline = time.monotonic() + 10
    while _alive(payload_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(payload_pid), "the payload process is gone"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pilot_killed_mid_job_is_retried_on_another_pilot(jobs_stub, local_queue, start_pilot, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell(
        'if [ "$PANDA_ATTEMPT" = 1 ]; then echo $$ > payload.pid; exec sleep 300; fi; echo ok > out.txt',
        max_attempts=2, files=[F(lfn="out.txt", kind=F.KIND_OUTPUT)],
    ))
    first = start_pilot(name="doomed")
    running = wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    first.signal(signal.SIGKILL)  # the pilot and its payload's group die at once
    first.wait(10)
    with_pid = list((tmp_path / "pilots" / "doomed").rglob("payload.pid"))
    if with_pid:
        # The payload's own group, which the pilot we killed had started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(with_pid[0].read_text()), signal.SIGKILL)
    retried = wait_for(jobs_stub, job.job_id, lambda j: j.attempt == 2, 30, "attempt 2")
    lost = [e for e in retried.history if e.state == J.STATE_FAILED]
    assert lost[0].error_code == 100 and "lost heartbeat" in lost[0].reason
    start_pilot(name="rescuer")
    done = wait_for(jobs_stub, job.job_id, timeout=60)
    assert done.state == J.STATE_FINISHED and done.attempt == 2
    assert done.pilot_id != running.pilot_id


def test_server_crash_loses_no_job_and_reruns_none(server, jobs_stub, local_queue, storage_dir, start_pilot) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell("sleep 6; echo $PANDA_ATTEMPT >> attempts.txt; cp attempts.txt out.txt",
                                     files=[F(lfn="out.txt", kind=F.KIND_OUTPUT)]))
    start_pilot()
    wait_for(jobs_stub, job.job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    server.kill()  # SIGKILL: the stream drops under the pilot
    time.sleep(1.0)
    # The pilot's backoff (0.5, 1, 2, 4 s...) may bring it back later than the tests' 4 s
    # heartbeat timeout after the restart; PanDA's is two hours. The test is about the crash.
    server.env["PANDA_HEARTBEAT_TIMEOUT_SECONDS"] = "60"
    server.start()  # same address and database; the pilot reconnects with backoff
    done = wait_for(jobs_stub, job.job_id, timeout=60)
    assert done.state == J.STATE_FINISHED, done.error_diag
    assert done.attempt == 1
    assert (storage_dir / ADMIN / "out.txt").read_text() == "1\n", "the payload ran exactly once"


def test_several_pilots_share_many_jobs(jobs_stub, local_queue, start_pilot) -> None:  # type: ignore[no-untyped-def]
    jobs = submit(jobs_stub, *[shell(f"echo {i}") for i in range(12)])
    for _ in range(3):
        start_pilot()
    finished = [wait_for(jobs_stub, j.job_id, timeout=90) for j in jobs]
    assert {j.state for j in finished} == {J.STATE_FINISHED}
    assert len({j.pilot_id for j in finished}) > 1
    assert all(len([e for e in j.history if e.state == J.STATE_SENT]) == 1 for j in finished)


def test_job_watch_stream_reports_each_state(jobs_stub, local_queue, start_pilot) -> None:  # type: ignore[no-untyped-def]
    (job,) = submit(jobs_stub, shell("true"))
    stream = jobs_stub.WatchJobs(job_service_pb2.WatchJobsRequest(job_ids=[job.job_id]), timeout=60)
    start_pilot()
    seen = []
    for response in stream:
        seen.append(response.event.state)
        if response.event.state == J.STATE_FINISHED:
            break
    stream.cancel()
    assert seen[0] == J.STATE_ACTIVATED and seen[-1] == J.STATE_FINISHED
    assert J.STATE_SENT in seen and J.STATE_RUNNING in seen
    assert get_job(jobs_stub, job.job_id).state == J.STATE_FINISHED
