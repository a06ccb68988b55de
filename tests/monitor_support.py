"""What the monitor's tests share: a site with a server, JEDI and a gateway on one database, a
queue `local` served by a real pilot and a queue `idle` that none serves."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from panda.server.v1 import queue_pb2, queue_service_pb2
from panda_cli.launcher import Process, spawn
from tests.jedi_support import JediHandle, new_jedi
from tests.server_support import QueueStubs, ensure_storage_element, token_channel
from tools.cluster import (
    GatewayHandle,
    IdentityHandle,
    ServerHandle,
    drop_database,
    fresh_database,
    start_gateway,
    start_server,
)

__all__ = ["Running", "running_site"]


@dataclass
class Running:
    server: ServerHandle
    jedi: JediHandle
    gateway: GatewayHandle
    se_dir: Path


@contextmanager
def running_site(base: Path, database_kind: str, identity: IdentityHandle,
                 gateway_env: dict[str, str] | None = None) -> Iterator[Running]:
    database = fresh_database(database_kind, base, f"panda_test_{uuid.uuid4().hex[:10]}")
    server = start_server(base, database, identity.trust_env())
    jedi = new_jedi(server, base / "logs", **identity.robot_env("panda-jedi"))
    jedi.start()
    gateway = start_gateway(base / "gateway", server_address=server.address, iam_address=identity.address,
                            jedi_address=jedi.address, extra_env=gateway_env)
    pilot: Process | None = None
    try:
        se_dir = base / "se" / "local"
        with token_channel(server.address, identity) as channel:
            stubs = QueueStubs(channel)
            ensure_storage_element(stubs.storage, se_dir)
            # `local` has a pilot; `idle` none, so what waits there stays waiting.
            for queue_id in ("local", "idle"):
                stubs.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
                    queue_id=queue_id, status=queue_pb2.Queue.STATUS_ONLINE, storage_element="local")), timeout=10)
        pilot = spawn("pilot", [sys.executable, "-m", "pilot_agent", "--queue", "local", "--server", server.address,
                                "--workdir", str(base / "pilot"), "--idle-timeout", "600",
                                "--heartbeat-interval", "1"],
                      {"PANDA_DATA_DIR": str(base), **identity.robot_env("panda-pilot")}, base / "logs" / "pilot.log")
        yield Running(server, jedi, gateway, se_dir)
    finally:
        if pilot is not None:
            pilot.stop(timeout=15)
        gateway.stop()
        jedi.stop()
        server.stop()
        drop_database(database)
