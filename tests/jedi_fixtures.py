"""Fixtures for JEDI's tests: a real JEDI process next to the real server of tests/conftest.py
(so every JEDI test runs on SQLite and on PostgreSQL), and its stubs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from panda.jedi.v1 import dataset_service_pb2_grpc, task_service_pb2_grpc
from tests.jedi_support import JediHandle, new_jedi
from tests.server_support import token_channel
from tools.cluster import IdentityHandle, ServerHandle


@pytest.fixture
def jedi(server: ServerHandle, tmp_path: Path, identity: IdentityHandle) -> Iterator[JediHandle]:
    handle = new_jedi(server, tmp_path / "logs", **identity.robot_env("panda-jedi"))
    handle.start()
    yield handle
    handle.stop()
    errors = [line for line in handle.log().splitlines() if " ERROR " in line or "Traceback" in line]
    if errors:
        print(handle.log()[-8000:], file=sys.stderr)
    assert not errors, f"JEDI logged errors: {errors[:5]}"


@pytest.fixture
def jedi_channel(jedi: JediHandle, identity: IdentityHandle) -> Iterator[grpc.Channel]:
    with token_channel(jedi.address, identity) as chan:
        yield chan


@pytest.fixture
def tasks_stub(jedi_channel: grpc.Channel) -> task_service_pb2_grpc.TaskServiceStub:
    return task_service_pb2_grpc.TaskServiceStub(jedi_channel)


@pytest.fixture
def datasets_stub(jedi_channel: grpc.Channel) -> dataset_service_pb2_grpc.DatasetServiceStub:
    return dataset_service_pb2_grpc.DatasetServiceStub(jedi_channel)
