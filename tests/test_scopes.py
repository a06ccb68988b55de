"""Outputs cannot overwrite anyone's data: every file is known by (scope, lfn), a user writes only
in its own scope (production in its VO's), a registered name is never given to a second job,
and the pilot never replaces a file the job did not write. Each test is an attack a user tried,
over real sockets against a real server (SQLite and PostgreSQL) with real pilots."""

from __future__ import annotations

import zlib
from pathlib import Path

import grpc

from panda.server.v1 import job_pb2, job_service_pb2
from tests.server_support import get_job, submit, wait_for
from tests.test_storage_isolation import fields_of, refused

J = job_pb2.Job
F = job_pb2.JobFile


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def writer(lfn: str, text: str, **fields: object) -> J:
    return J(queue="local", command=["/bin/sh", "-c", f"echo '{text}' > {lfn}"],
             files=[F(lfn=lfn, kind=F.KIND_OUTPUT)], **fields)  # type: ignore[arg-type]


def test_two_users_outputs_of_one_name_are_two_files(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot, as_user
) -> None:
    # The attack: bob's job writes result.txt after alice's, and alice's file was overwritten.
    (alices,) = submit(as_user("alice"), writer("result.txt", "result of alice"))
    (bobs,) = submit(as_user("bob"), writer("result.txt", "result of bob"))
    assert [(f.scope, f.lfn) for f in alices.files] == [("user.alice", "result.txt")]
    assert [(f.scope, f.lfn) for f in bobs.files] == [("user.bob", "result.txt")]
    start_pilot()
    for job, user, text in ((alices, "alice", "result of alice"), (bobs, "bob", "result of bob")):
        done = wait_for(jobs_stub, job.job_id)
        assert done.state == J.STATE_FINISHED, done.error_diag
        stored = storage_dir / f"user.{user}" / "result.txt"
        assert stored.read_text() == f"{text}\n"
        (output,) = done.files
        assert (output.scope, output.status) == (f"user.{user}", F.STATUS_READY)
        assert (output.size_bytes, output.adler32) == (stored.stat().st_size, adler32_of(stored))
    assert not (storage_dir / "result.txt").exists()


def test_a_name_taken_in_a_scope_is_not_given_to_a_second_job(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot, as_user
) -> None:
    alice = as_user("alice")
    (first,) = submit(alice, writer("result.txt", "first"))
    (failing,) = submit(alice, J(queue="local", command=["false"], max_attempts=1,
                                 files=[F(lfn="failed.txt", kind=F.KIND_OUTPUT)]))
    (cancelled,) = submit(alice, writer("cancelled.txt", "never"))
    alice.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[cancelled.job_id]), timeout=10)
    # Declared by a job that may still produce it: refused, nothing stored.
    error = refused(submit, alice, writer("other.txt", "x"), writer("result.txt", "second"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS, error.details()
    assert "jobs[1].files[0].lfn: user.alice:result.txt is already registered or about to be" in error.details()
    # Twice in one batch: refused too.
    error = refused(submit, alice, writer("twice.txt", "a"), writer("twice.txt", "b"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS and "jobs[1].files[0].lfn" in error.details()
    start_pilot()
    assert wait_for(jobs_stub, first.job_id).state == J.STATE_FINISHED
    # Registered: refused for good.
    error = refused(submit, alice, writer("result.txt", "second"))
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert (storage_dir / "user.alice" / "result.txt").read_text() == "first\n"
    listed = alice.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10).jobs
    assert sorted(j.job_id for j in listed) == sorted([first.job_id, failing.job_id, cancelled.job_id])
    # A job whose last attempt failed, or that was cancelled, gives its names back.
    assert wait_for(jobs_stub, failing.job_id).state == J.STATE_FAILED
    assert get_job(jobs_stub, cancelled.job_id).state == J.STATE_CANCELLED
    for job in submit(alice, writer("failed.txt", "now"), writer("cancelled.txt", "now")):
        assert wait_for(jobs_stub, job.job_id).state == J.STATE_FINISHED


def test_outputs_go_only_in_scopes_their_owner_may_write(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot, as_user
) -> None:
    alice, prod = as_user("alice"), as_user("prod")
    cases = [
        ("user.bob", grpc.StatusCode.PERMISSION_DENIED, "may not be written in scope user.bob"),
        ("panda", grpc.StatusCode.PERMISSION_DENIED, "may not be written in scope panda"),
        ("../etc", grpc.StatusCode.INVALID_ARGUMENT, "is not a scope"),
        ("a:b", grpc.StatusCode.INVALID_ARGUMENT, "is not a scope"),
    ]
    for scope, code, text in cases:
        job = J(queue="local", command=["true"], files=[F(lfn="out.txt", kind=F.KIND_OUTPUT, scope=scope)])
        error = refused(submit, alice, job)
        assert (error.code(), text in error.details()) == (code, True), (scope, error.details())
        assert "jobs[0].files[0].scope" in error.details()
    assert fields_of(refused(submit, alice, J(queue="local", command=["true"], files=[
        F(lfn="o", kind=F.KIND_OUTPUT, scope="../etc")]))) == ["jobs[0].files[0].scope"]
    # Production writes its VO's scope; anyone reads any scope.
    (produced,) = submit(prod, J(queue="local", command=["/bin/sh", "-c", "echo vo data > vo.txt"],
                                 files=[F(lfn="vo.txt", kind=F.KIND_OUTPUT, scope="panda")]))
    start_pilot()
    assert wait_for(jobs_stub, produced.job_id).state == J.STATE_FINISHED
    assert (storage_dir / "panda" / "vo.txt").read_text() == "vo data\n"
    (reader,) = submit(alice, J(queue="local", command=["/bin/sh", "-c", "cat vo.txt > copy.txt"],
                                files=[F(lfn="vo.txt", kind=F.KIND_INPUT, scope="panda"),
                                       F(lfn="copy.txt", kind=F.KIND_OUTPUT)]))
    assert wait_for(jobs_stub, reader.job_id).state == J.STATE_FINISHED
    assert (storage_dir / "user.alice" / "copy.txt").read_text() == "vo data\n"


def test_the_pilot_never_replaces_a_file_its_job_did_not_write(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    # A file the server has no job for (registered by hand, or as a dataset) holds the name.
    (storage_dir / "user.admin").mkdir()
    taken = storage_dir / "user.admin" / "taken.txt"
    taken.write_text("registered data\n")
    (job,) = submit(jobs_stub, writer("taken.txt", "overwritten", max_attempts=1))
    start_pilot()
    failed = wait_for(jobs_stub, job.job_id)
    assert (failed.state, failed.error_code) == (J.STATE_FAILED, 1221), failed.error_diag
    assert "user.admin:taken.txt already exists" in failed.error_diag and "never overwritten" in failed.error_diag
    assert taken.read_text() == "registered data\n"
    assert failed.files[0].status == F.STATUS_DEFINED


def test_a_retried_job_replaces_its_own_earlier_output(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    # Attempt 1 stages out first.txt, then fails (second.txt is missing); attempt 2 writes both.
    script = ('echo "attempt $PANDA_ATTEMPT" > first.txt; '
              'if [ "$PANDA_ATTEMPT" -ge 2 ]; then echo done > second.txt; fi')
    (job,) = submit(jobs_stub, J(queue="local", command=["/bin/sh", "-c", script], max_attempts=2,
                                 files=[F(lfn="first.txt", kind=F.KIND_OUTPUT),
                                        F(lfn="second.txt", kind=F.KIND_OUTPUT)]))
    start_pilot()
    done = wait_for(jobs_stub, job.job_id)
    assert (done.state, done.attempt) == (J.STATE_FINISHED, 2), done.error_diag
    assert [e.error_code for e in done.history if e.state == J.STATE_FAILED] == [1165]
    first = storage_dir / "user.admin" / "first.txt"
    assert first.read_text() == "attempt 2\n"
    registered = {f.lfn: f for f in get_job(jobs_stub, job.job_id).files}
    assert (registered["first.txt"].adler32, registered["first.txt"].size_bytes) == (
        adler32_of(first), first.stat().st_size)
    assert registered["first.txt"].attempt == 2
