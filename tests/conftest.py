"""Fixtures: a real identity service for the whole session, a real server on a fresh SQLite
file or PostgreSQL database, real pilots, and gRPC stubs over real sockets. Every server test
runs on both databases. Every call carries a token: the stubs and the in-process command line
act as the `admin` user, pilots as the `panda-pilot` robot."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from panda.server.v1 import (
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    storage_service_pb2_grpc,
)
from panda_cli.launcher import Process, spawn
from tests.server_support import TEST_SERVER_ENV, QueueStubs, ensure_storage_element, token_channel
from tools.cluster import (
    IdentityHandle,
    ServerHandle,
    drop_database,
    fresh_database,
    start_iam,
    start_server,
)


@pytest.fixture(scope="session", autouse=True)
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityHandle]:
    """The identity service every test's processes trust. The test process itself (and so the
    in-process command line) calls as `admin`; a developer's own sign-in is never read."""
    handle = start_iam(tmp_path_factory.mktemp("iam"))
    session_env = {
        **handle.trust_env(), "PANDA_TOKEN": handle.token("admin"),
        "XDG_CONFIG_HOME": str(tmp_path_factory.mktemp("config")),
    }
    saved = {key: os.environ.get(key) for key in session_env}
    os.environ.update(session_env)
    yield handle
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    handle.stop()


@pytest.fixture(scope="session", autouse=True)
def plain_output() -> Iterator[None]:
    """The command line draws progress live only at a terminal, which rich may be told a pipe is
    (FORCE_COLOR, TTY_COMPATIBLE, as some CI machines set): the tests read its plain output, and
    ask for a terminal where they mean one."""
    forcing = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    saved = {key: os.environ.pop(key) for key in forcing if key in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture
def local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets this process's local time zone (TZ, e.g. "XST-5": 5 hours east of UTC, called XST)
    for the test; the process's own comes back after it."""

    def set_zone(tz: str) -> None:
        monkeypatch.setenv("TZ", tz)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind. PostgreSQL must be there: no skipping."""
    url = fresh_database(request.param, tmp_path, f"panda_test_{uuid.uuid4().hex[:10]}")
    yield url
    drop_database(url)


@pytest.fixture
def server(database_url: str, tmp_path: Path, identity: IdentityHandle) -> Iterator[ServerHandle]:
    handle = start_server(tmp_path, database_url, {**identity.trust_env(), **TEST_SERVER_ENV})
    yield handle
    handle.stop()
    if handle.process is not None and handle.process.returncode not in (0, -15, None):
        print(handle.process.log()[-5000:], file=sys.stderr)


@pytest.fixture
def channel(server: ServerHandle, identity: IdentityHandle) -> Iterator[grpc.Channel]:
    with token_channel(server.address, identity) as chan:
        yield chan


@pytest.fixture
def jobs_stub(channel: grpc.Channel) -> job_service_pb2_grpc.JobServiceStub:
    return job_service_pb2_grpc.JobServiceStub(channel)


@pytest.fixture
def queues_stub(channel: grpc.Channel) -> QueueStubs:
    return QueueStubs(channel)


@pytest.fixture
def storage_stub(channel: grpc.Channel) -> storage_service_pb2_grpc.StorageServiceStub:
    return storage_service_pb2_grpc.StorageServiceStub(channel)


@pytest.fixture
def as_user(
    server: ServerHandle, identity: IdentityHandle
) -> Iterator[Callable[[str], job_service_pb2_grpc.JobServiceStub]]:
    """JobService stubs calling as a test user (alice, bob, prod...), by name."""
    channels: list[grpc.Channel] = []

    def stub(user: str) -> job_service_pb2_grpc.JobServiceStub:
        channels.append(token_channel(server.address, identity, user))
        return job_service_pb2_grpc.JobServiceStub(channels[-1])

    yield stub
    for channel in channels:
        channel.close()


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    path = tmp_path / "se" / "local"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def local_queue(queues_stub: QueueStubs, storage_dir: Path) -> str:
    """Queue `local`, on storage element `local` (storage_dir)."""
    ensure_storage_element(queues_stub.storage, storage_dir)
    queues_stub.CreateQueue(
        queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id="local", status=queue_pb2.Queue.STATUS_ONLINE, storage_element="local")
        ),
        timeout=10,
    )
    return "local"


@pytest.fixture
def start_pilot(
    server: ServerHandle, tmp_path: Path, identity: IdentityHandle
) -> Iterator[Callable[..., Process]]:
    """Starts real pilot processes; every one is stopped (by its PID) at the end."""
    started: list[Process] = []

    def start(queue: str = "local", *extra: str, name: str = "", env: dict[str, str] | None = None) -> Process:
        """A pilot as the `panda-pilot` robot; `env` is added to its environment."""
        name = name or f"pilot{len(started)}"
        workdir = tmp_path / "pilots" / name
        args = [
            sys.executable, "-m", "pilot_agent", "--queue", queue, "--server", server.address,
            "--workdir", str(workdir), "--idle-timeout", "120", "--heartbeat-interval", "1", *extra,
        ]
        env = {"PANDA_DATA_DIR": str(tmp_path), **identity.robot_env("panda-pilot"), **(env or {})}
        process = spawn(name, args, env, tmp_path / "logs" / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(timeout=15)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
