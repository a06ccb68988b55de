"""A database outage is UNAVAILABLE (which clients retry), never INTERNAL with the driver's words:
a real server on its own PostgreSQL database, reached through a TCP relay the test takes away
(every connection cut, then nothing listening) and brings back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest

from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
)
from panda_runtime.client import ConnectConfig, ServerClient
from panda_runtime.client.credentials import StaticToken
from tests.server_support import TEST_SERVER_ENV, token_channel
from tools.cluster import IdentityHandle, ServerHandle, drop_database, free_port, fresh_database, start_server

# The words of a driver or a database that must not reach a caller.
DRIVER_WORDS = ("psycopg", "connection", "refused", "SQL", "127.0.0.1", "OperationalError", "server closed")


class Relay:
    """Forwards a local port to PostgreSQL; `cut()` closes every connection and stops listening,
    `restore()` listens again on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*doomed, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


@pytest.fixture
def relayed_server(tmp_path: Path, identity: IdentityHandle) -> Iterator[tuple[Relay, ServerHandle]]:
    url = fresh_database("postgresql", tmp_path, f"panda_outage_{uuid.uuid4().hex[:10]}")
    parts = urlsplit(url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    relay.restore()
    relayed_url = url.replace(f"{parts.hostname}:{parts.port or 5432}", f"127.0.0.1:{relay.port}", 1)
    if relayed_url == url:  # a URL without a port: the relay's goes after the host
        relayed_url = url.replace(f"@{parts.hostname}/", f"@127.0.0.1:{relay.port}/", 1)
    server = start_server(tmp_path, relayed_url, {**identity.trust_env(), **TEST_SERVER_ENV})
    try:
        yield relay, server
    finally:
        server.stop()
        relay.cut()
        drop_database(url)


def call_during_outage(call, request) -> grpc.RpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30)
    return raised.value


def test_an_unreachable_database_is_unavailable_and_the_server_recovers(
        relayed_server: tuple[Relay, ServerHandle], identity: IdentityHandle) -> None:
    relay, server = relayed_server
    address = server.address
    with token_channel(address, identity) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(queue_id="local")), timeout=10)
        submit = job_service_pb2.SubmitJobsRequest(jobs=[job_pb2.Job(queue="local", command=["true"])])
        (job,) = jobs.SubmitJobs(submit, timeout=10).jobs

        relay.cut()  # the connections the server holds are lost; new ones are refused
        for what, call, request in [
            ("GetJob", jobs.GetJob, job_service_pb2.GetJobRequest(job_id=job.job_id)),
            ("ListJobs", jobs.ListJobs, job_service_pb2.ListJobsRequest()),
            ("SubmitJobs", jobs.SubmitJobs, submit),
            ("KillJobs", jobs.KillJobs, job_service_pb2.KillJobsRequest(job_ids=[job.job_id])),
            ("ListQueues", queues.ListQueues, queue_service_pb2.ListQueuesRequest()),
        ]:
            error = call_during_outage(call, request)
            assert error.code() == grpc.StatusCode.UNAVAILABLE, f"{what}: {error.code()} {error.details()}"
            assert error.details() == "the database is unavailable; try again later", what
            assert not any(word in (error.details() or "") for word in DRIVER_WORDS)
        time.sleep(1.5)  # the watchdog (every 0.5 s) and the dispatch loops meet the outage too

        # A client's retry policy carries a read over a short outage.
        threading.Timer(1.0, relay.restore).start()
        started = time.monotonic()
        config = ConnectConfig(address, tokens=StaticToken(identity.token("admin")))
        with ServerClient(config) as client:
            again = client.jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.job_id)).job
        assert again.job_id == job.job_id and time.monotonic() - started >= 0.9
        listed = jobs.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10).jobs
        assert [j.job_id for j in listed] == [job.job_id], "nothing was stored during the outage"
        assert jobs.GetJob(job_service_pb2.GetJobRequest(job_id=job.job_id), timeout=10).job.state == \
            job_pb2.Job.STATE_ACTIVATED, "the kill during the outage changed nothing"
        # The loops said so in one line each, and nothing logged a traceback.
        log = server.log_file().read_text()
        assert "watchdog sweep failed: the database is unavailable" in log
        assert "Traceback" not in log, log[-3000:]
