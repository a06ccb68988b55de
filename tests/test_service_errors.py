"""What the interceptor every service shares answers for each kind of failure, over a real
socket: a contract's broken rule is INVALID_ARGUMENT with the field, a message that quotes a long
input is cut to fit gRPC's trailers, the database out of reach is UNAVAILABLE, and anything else
is INTERNAL with an error id and nothing more; the traceback, under the same id, is in the log."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from panda.server.v1 import job_service_pb2, job_service_pb2_grpc
from panda_runtime.contracts import Violation
from panda_runtime.service.auth import AnonymousAuthenticator
from panda_runtime.service.db import is_unavailable
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.interceptors import ServiceInterceptor
from panda_runtime.service.principals import AUTHENTICATED, AccessTable

SECRET = "SELECT password_hash FROM iam_users WHERE name = 'admin'"


class Failing(job_service_pb2_grpc.JobServiceServicer):
    """GetJob fails as its job_id says."""

    async def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        if request.job_id == 1:
            raise RuntimeError(SECRET)
        if request.job_id == 2:
            raise Violation("jobs[0].label", "label contains a NUL character")
        if request.job_id == 3:
            raise InvalidArgument("label " + "é" * 100_000 + " is too long", field="jobs[0].label")
        if request.job_id == 4:
            raise OperationalError(None, None, ConnectionRefusedError(f"connection refused for {SECRET}"))
        return job_service_pb2.GetJobResponse()


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    found: list[str] = []

    async def serve() -> grpc.aio.Server:
        server = grpc.aio.server(interceptors=[ServiceInterceptor(
            AnonymousAuthenticator(), AccessTable({"/panda.server.v1.JobService/GetJob": {AUTHENTICATED}}))])
        job_service_pb2_grpc.add_JobServiceServicer_to_server(Failing(), server)
        found.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        await server.start()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop(None))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    yield found[0]
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def failed(address: str, job_id: int) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as raised:
        job_service_pb2_grpc.JobServiceStub(channel).GetJob(job_service_pb2.GetJobRequest(job_id=job_id), timeout=10)
    return raised.value


def test_an_unexpected_error_is_internal_with_an_id_the_log_carries(address: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="panda.rpc"):
        error = failed(address, 1)
    assert error.code() == grpc.StatusCode.INTERNAL
    found = re.fullmatch(r"internal error \(error id ([0-9a-f]{12})\); the service's log has the details",
                         error.details() or "")
    assert found, error.details()
    assert "SELECT" not in (error.details() or "") and "RuntimeError" not in (error.details() or "")
    (record,) = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert record.levelno == logging.ERROR and record.exc_info and SECRET in str(record.exc_info[1])


def test_a_broken_rule_is_invalid_argument_naming_its_field(address: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="panda.rpc"):
        error = failed(address, 2)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "jobs[0].label: label contains a NUL character"
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # the call's error carries its trailers
    assert status is not None
    request = error_details_pb2.BadRequest()
    status.details[0].Unpack(request)
    assert [v.field for v in request.field_violations] == ["jobs[0].label"]
    (record,) = [r for r in caplog.records if "GetJob" in r.getMessage()]
    assert record.levelno == logging.INFO and record.exc_info is None, "one line, no traceback"


def test_a_message_quoting_a_long_input_is_cut_to_fit(address: str) -> None:
    error = failed(address, 3)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert (error.details() or "").startswith("label éé") and (error.details() or "").endswith("...")
    assert len((error.details() or "").encode()) <= 1000


def test_the_database_out_of_reach_is_unavailable_without_its_words(address: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="panda.rpc"):
        error = failed(address, 4)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == "the database is unavailable; try again later"
    (record,) = [r for r in caplog.records if "GetJob" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None


class _DriverError(Exception):
    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(("error", "unavailable"), [
    (OperationalError(None, None, _DriverError("connection refused")), True),  # no statement ran: no connection
    (OperationalError("SELECT 1", None, _DriverError("terminating connection", "57P01")), True),
    (OperationalError("SELECT 1", None, _DriverError("server closed the connection", "08006")), True),
    (OperationalError("SELECT 1", None, _DriverError("lost"), connection_invalidated=True), True),
    (OperationalError("SELECT 1", None, _DriverError("number of parameters must be between 0 and 65535")), False),
    (IntegrityError("INSERT", None, _DriverError("duplicate key", "23505")), False),
    (DataError("INSERT", None, _DriverError("value too long", "22001")), False),
    (OperationalError("UPDATE jobs", None, sqlite3.OperationalError("database is locked")), True),
    (OperationalError("SELECT 1", None, sqlite3.OperationalError("too many SQL variables")), False),
    (PoolTimeout("QueuePool limit reached"), True),
    (ValueError("not a database error"), False),
])
def test_what_counts_as_the_database_out_of_reach(error: Exception, unavailable: bool) -> None:
    assert is_unavailable(error) is unavailable
