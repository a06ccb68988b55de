"""A harvester beside the test server: its queue configuration, its start as the harvester robot
with the pilot robot's credentials for its pilots, and what tests look at (its workers as the
server lists them, the processes of its pilots)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import psutil

from panda.harvester.v1 import harvester_service_pb2, harvester_service_pb2_grpc, worker_pb2
from tools.cluster import HarvesterHandle, IdentityHandle, ServerHandle, start_harvester

# Quick cycles and quick idle pilots: a test waits seconds, not minutes.
TEST_HARVESTER_ENV = {
    "PANDA_HARVESTER_CYCLE_SECONDS": "0.5",
    "PANDA_HARVESTER_HEARTBEAT_SECONDS": "1",
    "PANDA_HARVESTER_PILOT_IDLE_SECONDS": "3",
    "PANDA_HARVESTER_KILL_GRACE_SECONDS": "3",
}
FINAL_WORKER_STATES = {worker_pb2.Worker.STATE_FINISHED, worker_pb2.Worker.STATE_FAILED,
                       worker_pb2.Worker.STATE_CANCELLED, worker_pb2.Worker.STATE_MISSED}


def local_queue_config(**overrides: Any) -> dict[str, Any]:
    queue: dict[str, Any] = {
        "queueStatus": "online", "mapType": "NoJob", "maxWorkers": 4, "nQueueLimitWorker": 4,
        "maxNewWorkersPerCycle": 4, "resources": {"cores": 1, "memoryMB": 2000, "walltimeSeconds": 3600},
        "submitter": {"plugin": "local"},
    }
    queue.update(overrides)
    if "maxNewWorkersPerCycle" not in overrides:
        queue["maxNewWorkersPerCycle"] = queue["maxWorkers"]
    return {"local": queue}


def run_harvester(tmp_path: Path, server: ServerHandle, identity: IdentityHandle, config: dict[str, Any],
                  *, harvester_id: str = "test-harvester", extra_env: dict[str, str] | None = None,
                  data_dir: Path | None = None) -> HarvesterHandle:
    data_dir = data_dir or tmp_path / "harvester"
    config_path = data_dir / "queueconfig.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config))
    env = {**identity.robot_env("panda-harvester"), **TEST_HARVESTER_ENV,
           "PANDA_HARVESTER_PILOT_CLIENT_ID": "panda-pilot",
           "PANDA_HARVESTER_PILOT_CLIENT_SECRET": identity.secrets["panda-pilot"], **(extra_env or {})}
    return start_harvester(data_dir, server_address=server.address, database_url=server.database_url,
                           queue_config=config_path, harvester_id=harvester_id, extra_env=env)


def list_workers(channel: grpc.Channel, **filters: Any) -> list[worker_pb2.Worker]:
    stub = harvester_service_pb2_grpc.HarvesterServiceStub(channel)
    found: list[worker_pb2.Worker] = []
    token = ""
    while True:
        response = stub.ListWorkers(harvester_service_pb2.ListWorkersRequest(page_size=1000, page_token=token,
                                                                             **filters), timeout=10)
        found += response.workers
        token = response.next_page_token
        if not token:
            return found


def wait_until(check: Callable[[], Any], timeout: float, what: str, pause: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(pause)


def pilot_processes(access_points: Path) -> list[psutil.Process]:
    """Live processes (not zombies) whose working directory is under `access_points`: the
    pilots harvester started, their shells and their payloads."""
    found = []
    root = str(access_points)
    for process in psutil.process_iter(["cwd", "status"]):
        cwd = process.info.get("cwd") or ""
        if cwd.startswith(root) and process.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found
