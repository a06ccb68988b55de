"""`panda serve gateway` for real: the gateway listens where --gateway says (over PANDA_GATEWAY)
and sends each API's calls to the address its flag names: the server's to --server, the identity
service's to --iam, JEDI's to --jedi; SIGTERM stops it and frees its port."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx

from panda_cli.launcher import http_ready, spawn, wait_http_ready
from tools.cluster import IdentityHandle, ServerHandle, free_port


def test_panda_serve_gateway_calls_the_services_its_flags_name(
    server: ServerHandle, identity: IdentityHandle, tmp_path: Path
) -> None:
    address, jedi_nowhere = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    url = f"http://{address}"
    # The flags win over the variables.
    env = {"PANDA_GATEWAY": f"127.0.0.1:{free_port()}", "PANDA_SERVER": jedi_nowhere, "PANDA_IAM": jedi_nowhere,
           "PANDA_GATEWAY_METRICS_PORT": "0"}
    argv = [sys.executable, "-m", "panda_cli.main", "serve", "gateway", "--gateway", address,
            "--server", server.address, "--jedi", jedi_nowhere, "--iam", identity.address]
    process = spawn("gateway", argv, env, tmp_path / "gateway.log")
    try:
        wait_http_ready(process, url)
        headers = {"Authorization": f"Bearer {identity.token('admin')}"}
        queues = httpx.get(f"{url}/v1/queues", headers=headers, timeout=10)
        assert queues.status_code == 200 and "queues" in queues.json(), queues.text
        users = httpx.get(f"{url}/v1/users", headers=headers, timeout=10)
        assert users.status_code == 200, users.text
        assert {"admin", "alice"} <= {user["userId"] for user in users.json()["users"]}
        # Nothing listens where --jedi points: unavailable, said as grpc-gateway says it.
        tasks = httpx.get(f"{url}/v1/tasks", headers=headers, timeout=30)
        assert (tasks.status_code, tasks.json()["code"]) == (503, 14), tasks.text
    finally:
        code = process.stop()
    assert code == 0, process.log()
    assert not http_ready(url)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", int(address.rpartition(":")[2])))
