"""Clients in another language: tests/node/job_client.js (Node.js, @grpc/grpc-js and
@grpc/proto-loader, installed by `npm ci`) loads the contracts from `proto/` alone with the
vendored googleapis protos, gets a robot's token with the client-credentials grant from the real
identity service, submits a job to the real server, follows it over WatchJobs while a real pilot
runs it, and reads it back with GetJob; tests/node/gateway_client.js does the same through the
HTTP/JSON gateway with nothing but Node.js's fetch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tools.cluster import IdentityHandle, ServerHandle, start_gateway

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "tests" / "node"


def run_node_client(script: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The script's JSON lines, one per step; its exit status must be 0."""
    node = shutil.which("node")
    assert node, "node not found: scripts/test.sh installs Node.js"
    result = subprocess.run([node, str(SCRIPTS / script)], env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=120, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, f"{lines}\n{result.stderr[-3000:]}"
    return lines


@pytest.mark.parametrize("script", ["job_client.js", "gateway_client.js"])
def test_a_node_client_submits_watches_and_reads_a_job(  # type: ignore[no-untyped-def]
    server: ServerHandle, identity: IdentityHandle, local_queue: str, start_pilot, script: str, tmp_path: Path
) -> None:
    robot = identity.robot_env("panda-jedi")
    start_pilot()
    env = {
        "PANDA_ISSUER": identity.issuer, "PANDA_CLIENT_ID": robot["PANDA_CLIENT_ID"],
        "PANDA_CLIENT_SECRET": robot["PANDA_CLIENT_SECRET"], "PANDA_SERVER": server.address,
        "PANDA_QUEUE": local_queue,
    }
    gateway = None
    if script == "gateway_client.js":
        gateway = start_gateway(tmp_path, server_address=server.address, iam_address=identity.address)
        env["PANDA_GATEWAY_URL"] = gateway.url
    try:
        steps = run_node_client(script, env)
    finally:
        if gateway is not None:
            gateway.stop()
    by_step: dict[str, list[dict[str, Any]]] = {}
    for step in steps:
        by_step.setdefault(step["step"], []).append(step)
    assert set(by_step) == {"token", "submitted", "event", "job"}, steps

    (token,) = by_step["token"]
    assert token["token_type"].lower() == "bearer" and token["length"] > 0
    (submitted,) = by_step["submitted"]
    job_id = submitted["job_id"]
    assert submitted["state"] == "STATE_ACTIVATED" and submitted["owner"] == "panda-jedi"

    events = by_step["event"]
    assert {event["job_id"] for event in events} == {job_id}
    states = [event["state"] for event in events]
    assert states[-1] == "STATE_FINISHED", steps
    assert "STATE_RUNNING" in states

    (job,) = by_step["job"]
    assert (job["job_id"], job["state"], job["owner"]) == (job_id, "STATE_FINISHED", "panda-jedi")
    assert job["queue"] == local_queue
    assert job["command"] == ["/bin/sh", "-c", "echo hello from node"]
    assert job["history"] == states
