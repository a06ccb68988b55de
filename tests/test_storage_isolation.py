"""Storage is the system's, not the submitter's: storage elements are configured by admins, jobs
name them by id only, and the pilot stages only inside them. Each test is an attack a user
tried, over real sockets against a real server (SQLite and PostgreSQL) with real pilots."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    storage_element_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from tests.server_support import ensure_storage_element, submit, token_channel, wait_for
from tools.cluster import IdentityHandle, ServerHandle

J = job_pb2.Job
F = job_pb2.JobFile
SE = storage_element_pb2.StorageElement


def fields_of(error: grpc.RpcError) -> list[str]:
    """The fields a google.rpc BadRequest of the error names."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    found: list[str] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            found += [v.field for v in request.field_violations]
    return found


def all_jobs(jobs_stub) -> list[J]:  # type: ignore[no-untyped-def]
    return list(jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000), timeout=10).jobs)


def refused(call, *args: object) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(*args)
    return raised.value


@pytest.mark.parametrize("where", ["file:///etc", "/etc", "file:///tmp/anywhere"])
def test_a_job_cannot_name_a_url_or_a_path_for_its_files(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, where: str, tmp_path: Path
) -> None:
    # The attacks: stage in /etc/passwd from file:///etc, stage out to a directory of one's choosing.
    steal = J(queue="local", command=["cat", "passwd"],
              files=[F(lfn="passwd", kind=F.KIND_INPUT, storage_element=where)])
    plant = J(queue="local", command=["true"], files=[F(lfn="x.txt", kind=F.KIND_OUTPUT, storage_element=where)])
    for index, job in enumerate((steal, plant)):
        error = refused(submit, jobs_stub, J(queue="local", command=["true"]), job)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        assert "not by a URL" in error.details()
        assert fields_of(error) == ["jobs[1].files[0].storage_element"], index
    assert all_jobs(jobs_stub) == []
    assert not Path("/tmp/anywhere").exists()


def test_a_job_names_only_configured_elements_that_serve_its_queue_and_vo(  # type: ignore[no-untyped-def]
    jobs_stub, queues_stub, local_queue, tmp_path: Path, server: ServerHandle, identity: IdentityHandle
) -> None:
    ensure_storage_element(queues_stub.storage, tmp_path / "se" / "elsewhere", queues=["other"])
    ensure_storage_element(queues_stub.storage, tmp_path / "se" / "atlas-only", vos=["atlas"])
    cases = [
        ("nowhere", grpc.StatusCode.INVALID_ARGUMENT, "storage element nowhere is not configured"),
        ("elsewhere", grpc.StatusCode.INVALID_ARGUMENT, "storage element elsewhere does not serve queue local"),
        ("atlas-only", grpc.StatusCode.PERMISSION_DENIED, "storage element atlas-only is not open to VO panda"),
    ]
    with token_channel(server.address, identity, "alice") as channel:
        alice = job_service_pb2_grpc.JobServiceStub(channel)
        for element, code, text in cases:
            job = J(queue="local", command=["true"],
                    files=[F(lfn="out.txt", kind=F.KIND_OUTPUT, storage_element=element)])
            error = refused(submit, alice, job)
            assert (error.code(), text in error.details()) == (code, True), error.details()
            assert "jobs[0].files[0].storage_element" in error.details()
    assert all_jobs(jobs_stub) == []


def test_queues_name_configured_elements_only(queues_stub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def create(element: str) -> None:
        queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id="q", storage_element=element)), timeout=10)

    for element, text in [("file:///etc", "not by a URL"), ("nowhere", "storage element nowhere is not configured")]:
        error = refused(create, element)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and text in error.details()
        assert fields_of(error) == ["queue.storage_element"]
    ensure_storage_element(queues_stub.storage, tmp_path / "other-only", queues=["other"])
    error = refused(create, "other-only")
    assert "does not serve queue q" in error.details() and fields_of(error) == ["queue.storage_element"]
    error = refused(queues_stub.UpdateQueue, queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id="q", storage_element="file:///etc"),
        update_mask={"paths": ["storage_element"]}), 10)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_only_admins_configure_storage_elements_and_anyone_reads_them(  # type: ignore[no-untyped-def]
    server: ServerHandle, identity: IdentityHandle, storage_stub, tmp_path: Path
) -> None:
    root = tmp_path / "se"
    created = storage_stub.CreateStorageElement(storage_service_pb2.CreateStorageElementRequest(
        storage_element=SE(storage_element_id="site-a", url=f"file://{root}/a/", queues=["local"])), timeout=10)
    element = created.storage_element
    assert (element.name, element.url, list(element.queues), list(element.vos)) == (
        "storageElements/site-a", f"file://{root}/a", ["local"], [])
    with token_channel(server.address, identity, "alice") as channel:
        alice = storage_service_pb2_grpc.StorageServiceStub(channel)
        listed = alice.ListStorageElements(storage_service_pb2.ListStorageElementsRequest(), timeout=10)
        assert [e.storage_element_id for e in listed.storage_elements] == ["site-a"]
        for call, request in [
            (alice.CreateStorageElement, storage_service_pb2.CreateStorageElementRequest(
                storage_element=SE(storage_element_id="mine", url=f"file://{root}/mine"))),
            (alice.UpdateStorageElement, storage_service_pb2.UpdateStorageElementRequest(
                storage_element=SE(storage_element_id="site-a", url="file:///etc"), update_mask={"paths": ["url"]})),
        ]:
            assert refused(call, request, 10).code() == grpc.StatusCode.PERMISSION_DENIED
    # Where an element may be: a plain absolute directory, not inside or around another one.
    for url, text in [
        ("http://example.org/se", "not a local file URL"), ("file://host/se", "not a local file URL"),
        (f"file://{root}/b/../a", "plain absolute path"), ("file:///", "other than /"),
        (f"file://{root}/a/sub", "overlaps storage element site-a"), (f"file://{root}", "overlaps"),
        (f"file://{root}/a", "overlaps"), ("file:///x%00y", "control characters"), ("", "needs a URL"),
    ]:
        error = refused(storage_stub.CreateStorageElement, storage_service_pb2.CreateStorageElementRequest(
            storage_element=SE(storage_element_id="b", url=url)), 10)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and text in error.details(), (url, error.details())
        assert fields_of(error) == ["storage_element.url"]
    again = refused(storage_stub.CreateStorageElement, storage_service_pb2.CreateStorageElementRequest(
        storage_element=SE(storage_element_id="site-a", url=f"file://{root}/z")), 10)
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    updated = storage_stub.UpdateStorageElement(storage_service_pb2.UpdateStorageElementRequest(
        storage_element=SE(storage_element_id="site-a", vos=["panda"]), update_mask={"paths": ["vos"]}), timeout=10)
    assert (list(updated.storage_element.vos), updated.storage_element.url) == (["panda"], f"file://{root}/a")


def test_the_pilot_stages_nothing_through_a_link_out_of_its_element(  # type: ignore[no-untyped-def]
    jobs_stub, local_queue, storage_dir: Path, start_pilot, tmp_path: Path
) -> None:
    # A link inside the element to a file outside it: read it, or overwrite it.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (storage_dir / "user.admin").mkdir()
    (storage_dir / "user.admin" / "passwd").symlink_to("/etc/passwd")
    (storage_dir / "user.admin" / "victim.txt").symlink_to(victim)
    steal, overwrite = submit(
        jobs_stub,
        J(queue="local", command=["/bin/sh", "-c", "cat passwd > stolen.txt"], max_attempts=1,
          files=[F(lfn="passwd", kind=F.KIND_INPUT), F(lfn="stolen.txt", kind=F.KIND_OUTPUT)]),
        J(queue="local", command=["/bin/sh", "-c", "echo owned > victim.txt"], max_attempts=1,
          files=[F(lfn="victim.txt", kind=F.KIND_OUTPUT)]),
    )
    start_pilot()
    stolen = wait_for(jobs_stub, steal.job_id)
    assert (stolen.state, stolen.error_code) == (J.STATE_FAILED, 1099), stolen.error_diag
    assert "outside storage element" in stolen.error_diag
    assert stolen.exit_code == 0 and stolen.log_tail == "", "the payload never ran"
    assert not (storage_dir / "user.admin" / "stolen.txt").exists()
    written = wait_for(jobs_stub, overwrite.job_id)
    assert (written.state, written.error_code) == (J.STATE_FAILED, 1137), written.error_diag
    assert "outside storage element" in written.error_diag
    assert victim.read_text() == "precious\n"


def test_a_job_moves_only_to_a_queue_whose_storage_it_may_use(  # type: ignore[no-untyped-def]
    jobs_stub, queues_stub, local_queue, tmp_path: Path
) -> None:
    ensure_storage_element(queues_stub.storage, tmp_path / "se" / "atlas-only", vos=["atlas"])
    ensure_storage_element(queues_stub.storage, tmp_path / "se" / "open")
    for queue, element in (("atlas-site", "atlas-only"), ("open-site", "open")):
        queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id=queue, storage_element=element)), timeout=10)
    (job,) = submit(jobs_stub, J(queue="local", command=["true"], files=[F(lfn="out.txt", kind=F.KIND_OUTPUT)]))
    assert (job.files[0].storage_element, job.files[0].storage_url) == ("local", (tmp_path / "se" / "local").as_uri())
    moved = jobs_stub.ReassignJobs(job_service_pb2.ReassignJobsRequest(job_ids=[job.job_id], queue="atlas-site"),
                                   timeout=10).results[0]
    assert moved.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "storage element atlas-only is not open to VO panda" in moved.status.message
    stayed = jobs_stub.GetJob(job_service_pb2.GetJobRequest(job_id=job.job_id), timeout=10).job
    assert (stayed.queue, stayed.files[0].storage_element) == ("local", "local")
    moved = jobs_stub.ReassignJobs(job_service_pb2.ReassignJobsRequest(job_ids=[job.job_id], queue="open-site"),
                                   timeout=10).results[0]
    assert moved.status.code == 0
    went = jobs_stub.GetJob(job_service_pb2.GetJobRequest(job_id=job.job_id), timeout=10).job
    assert (went.queue, went.files[0].storage_element, went.files[0].storage_url) == (
        "open-site", "open", (tmp_path / "se" / "open").as_uri())
