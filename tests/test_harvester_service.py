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
import time
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
from tests.slurm_support import SlurmCluster, slurm_cluster
from tools.cluster import IdentityHandle, ServerHandle

__all__ = ["slurm_cluster"]

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


def test_harvester_killed_and_restarted_loses_no_worker_and_starts_none_twice(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    config = local_queue_config(maxWorkers=3, nQueueLimitWorker=3)
    harvester = run_harvester(tmp_path, server, identity, config)
    jobs = submit(jobs_stub, *[_job("sleep 6") for _ in range(3)])
    running = wait_until(lambda: [w for w in list_workers(channel) if w.state == W.STATE_RUNNING]
                         if len([w for w in list_workers(channel) if w.state == W.STATE_RUNNING]) == 3 else None,
                         60, "three running workers")
    pilots = {p.pid for p in pilot_processes(harvester.access_points)}
    harvester.kill()  # SIGKILL: no clean shutdown
    restarted = run_harvester(tmp_path, server, identity, config)
    try:
        # Running pilots are untouched by their harvester's death and restart.
        assert pilots and all(psutil.pid_exists(pid) for pid in pilots)
        for job in jobs:
            assert wait_for(jobs_stub, job.job_id, timeout=120).state == job_pb2.Job.STATE_FINISHED
        # The same three workers ran the three jobs; the pilots outlived harvester's death.
        assert {get_job(jobs_stub, job.job_id).worker_id for job in jobs} == {w.worker_id for w in running}
        workers = list_workers(channel)
        assert sorted(w.worker_id for w in workers) == sorted(w.worker_id for w in running), workers
        wait_until(lambda: all(w.state == W.STATE_FINISHED for w in list_workers(channel)), 60, "workers ended")
    finally:
        restarted.stop()


def test_a_worker_gone_without_its_batch_system_noticing_is_missed_and_its_job_retried(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(maxWorkers=1, nQueueLimitWorker=1))
    try:
        job = submit(jobs_stub, _job("sleep 8", max_attempts=3))[0]
        wait_for(jobs_stub, job.job_id, lambda j: j.state == job_pb2.Job.STATE_RUNNING, timeout=60, what="running")
        victim = get_job(jobs_stub, job.job_id).worker_id
        worker = next(w for w in list_workers(channel) if w.worker_id == victim)
        # The node loses the worker: its whole process group dies at once, shell included.
        os.killpg(int(worker.batch_id), signal.SIGKILL)
        missed = wait_until(lambda: next((w for w in list_workers(channel)
                                          if w.worker_id == victim and w.state == W.STATE_MISSED), None),
                            30, "the worker marked missed")
        assert "no exit code" in missed.error
        # The server's watchdog fails the attempt (lost heartbeat); a new worker runs the retry.
        done = wait_for(jobs_stub, job.job_id, timeout=120)
        assert done.state == job_pb2.Job.STATE_FINISHED and done.attempt == 2, done
        assert done.worker_id and done.worker_id != victim
        assert any(event.error_code == 100 or "heartbeat" in event.reason for event in done.history), done.history
    finally:
        harvester.stop()


def test_an_operators_kill_reaches_the_worker(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(maxWorkers=1, nQueueLimitWorker=1))
    try:
        job = submit(jobs_stub, _job("sleep 300"))[0]
        wait_for(jobs_stub, job.job_id, lambda j: j.state == job_pb2.Job.STATE_RUNNING, timeout=60, what="running")
        worker_id = get_job(jobs_stub, job.job_id).worker_id
        stub = harvester_service_pb2_grpc.HarvesterServiceStub(channel)
        stub.KillWorker(harvester_service_pb2.KillWorkerRequest(worker_id=worker_id, reason="draining the node"),
                        timeout=10)
        cancelled = wait_until(lambda: next((w for w in list_workers(channel)
                                             if w.worker_id == worker_id and w.state == W.STATE_CANCELLED), None),
                               30, "the worker cancelled")
        assert "killed by" in cancelled.error
        ended = wait_for(jobs_stub, job.job_id, lambda j: j.state != job_pb2.Job.STATE_RUNNING, timeout=60,
                         what="not running")
        assert ended.state != job_pb2.Job.STATE_FINISHED
        # Its pilot and payload are gone (a retry of the job may have another worker by now).
        wait_until(lambda: not pilot_processes(harvester.access_points / worker_id), 30,
                   "the worker's processes gone")
    finally:
        harvester.stop()


def test_work_arriving_between_cycles_gets_its_pilot_without_waiting_for_the_next_cycle(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    # A cycle far longer than the test waits: only the submitter's own round can start the pilot.
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(maxWorkers=1, nQueueLimitWorker=1),
                              extra_env={"PANDA_HARVESTER_CYCLE_SECONDS": "300",
                                         "PANDA_HARVESTER_SUBMIT_SECONDS": "0.5",
                                         "PANDA_HARVESTER_STOP_WORKERS_ON_EXIT": "true"})
    try:
        wait_until(lambda: "registered" in harvester.log(), 20, "harvester registered")
        time.sleep(1)  # its first cycle, right after registering, found no work
        assert list_workers(channel) == []
        job = submit(jobs_stub, _job())[0]
        done = wait_for(jobs_stub, job.job_id, timeout=30)
        assert done.state == job_pb2.Job.STATE_FINISHED, done
        # The server heard of the worker when it was submitted, not a cycle later.
        assert [w.worker_id for w in list_workers(channel)] == [done.worker_id]
    finally:
        harvester.stop()


def test_an_offline_queue_gets_no_workers(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(queueStatus="offline"))
    try:
        submit(jobs_stub, _job(), _job())
        wait_until(lambda: "registered" in harvester.log(), 20, "harvester registered")
        time.sleep(3)  # several cycles
        assert list_workers(channel) == []
        assert "submitted" not in harvester.log()
    finally:
        harvester.stop()


def test_a_bad_queue_configuration_stops_harvester_with_every_problem_named(tmp_path: Path) -> None:
    config = tmp_path / "queueconfig.json"
    config.write_text(json.dumps({
        "local": {"mapType": "NoJob", "maxWorkers": -1, "submitter": {"plugin": "lsf"}},
        "other": {"mapType": "OneToOne", "maxWorkers": 2, "nQueueLimitWorker": 5, "submitter": {"plugin": "slurm"}},
    }))
    result = subprocess.run(
        [sys.executable, "-m", "harvester_svc"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PANDA_HARVESTER_QUEUE_CONFIG": str(config), "PANDA_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert f"the queue configuration {config} is not valid" in result.stderr
    for problem in ('queue "local": maxWorkers', 'queue "local": submitter', "lsf",
                    'queue "other"', "nQueueLimitWorker", "partition"):
        assert problem in result.stderr, (problem, result.stderr)
    assert "Traceback" not in result.stderr


def test_work_through_a_real_slurm(server: ServerHandle, identity: IdentityHandle, local_queue: str,
                                   channel: grpc.Channel, jobs_stub: job_service_pb2_grpc.JobServiceStub,
                                   tmp_path: Path, slurm_cluster: SlurmCluster) -> None:
    """The same as on the local plugin, each worker a Slurm batch job running a real pilot."""
    config = local_queue_config(maxWorkers=2, nQueueLimitWorker=2,
                                submitter={"plugin": "slurm", "partition": slurm_cluster.partition})
    harvester = run_harvester(tmp_path, server, identity, config,
                              extra_env={"SLURM_CONF": str(slurm_cluster.conf)})
    try:
        jobs = submit(jobs_stub, *[_job("sleep 0.2") for _ in range(20)])
        for job in jobs:
            assert wait_for(jobs_stub, job.job_id, timeout=180).state == job_pb2.Job.STATE_FINISHED
        workers = list_workers(channel)
        assert {w.plugin for w in workers} == {"slurm"} and len(workers) >= 2
        ran = {get_job(jobs_stub, job.job_id).worker_id for job in jobs}
        assert ran <= {w.worker_id for w in workers}
        assert all(w.batch_id.isdigit() for w in workers)  # Slurm's job ids
        wait_until(lambda: all(w.state in FINAL_WORKER_STATES for w in list_workers(channel)), 90,
                   "every Slurm worker ended")
        assert {w.state for w in list_workers(channel)} == {W.STATE_FINISHED}
        assert all(w.node for w in list_workers(channel))
        wait_until(lambda: not any(harvester.access_points.iterdir()), 30, "every access point removed")
    finally:
        harvester.stop()
