"""Harvester for real, on SQLite and PostgreSQL: a real server, a real harvester process whose
local plugin starts real pilots, real payloads. Work arriving on an empty queue brings workers
up to the queue's limits, every job finishes, and the workers end and leave nothing behind; a
worker that vanishes is noticed and its job retried; harvester killed mid-way and restarted
loses no worker and starts none twice; an operator's kill reaches a worker; a bad
configuration stops harvester with every problem named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import psutil

from panda.harvester.v1 import harvester_service_pb2, harvester_service_pb2_grpc, worker_pb2
from panda.server.v1 import job_pb2, job_service_pb2_grpc
from tests.harvester_support import (
    FINAL_WORKER_STATES,
    list_workers,
    local_queue_config,
    pilot_processes,
    run_harvester,
    wait_until,
)
from tests.server_support import get_job, submit, wait_for
from tools.cluster import IdentityHandle, ServerHandle

W = worker_pb2.Worker


def _job(command: str = "/bin/true", **fields: object) -> job_pb2.Job:
    return job_pb2.Job(queue="local", command=["/bin/sh", "-c", command], **fields)  # type: ignore[arg-type]


def test_work_on_an_empty_queue_brings_workers_up_to_the_limit_and_all_of_it_finishes(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(maxWorkers=4, nQueueLimitWorker=4))
    try:
        assert list_workers(channel) == []  # no work, no workers
        jobs = submit(jobs_stub, *[_job("sleep 0.2") for _ in range(50)])
        most_live = 0
        watching = threading.Event()

        def watch() -> None:
            nonlocal most_live
            while not watching.is_set():
                live = [w for w in list_workers(channel) if w.state not in FINAL_WORKER_STATES]
                most_live = max(most_live, len(live))
                watching.wait(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for job in jobs:
                finished = wait_for(jobs_stub, job.job_id, timeout=180)
                assert finished.state == job_pb2.Job.STATE_FINISHED, finished
        finally:
            watching.set()
            watcher.join()
        assert most_live == 4, most_live
        workers = list_workers(channel)
        ran = {get_job(jobs_stub, job.job_id).worker_id for job in jobs}
        assert ran <= {w.worker_id for w in workers} and all(ran)
        # Idle pilots leave; their workers end and are cleaned up: no process, no access point.
        wait_until(lambda: all(w.state in FINAL_WORKER_STATES for w in list_workers(channel)), 60,
                   "every worker ended")
        ended = list_workers(channel)
        assert {w.state for w in ended} == {W.STATE_FINISHED}, [(w.worker_id, W.State.Name(w.state)) for w in ended]
        assert all(w.batch_id and w.node and w.end_time.seconds for w in ended)
        wait_until(lambda: not any(harvester.access_points.iterdir()), 30, "every access point removed")
        assert pilot_processes(harvester.access_points) == []
    finally:
        harvester.stop()
