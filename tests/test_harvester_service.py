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
import pytest

from harvester_svc.domain.relay_tokens import relay_token
from panda.harvester.v1 import harvester_service_pb2, harvester_service_pb2_grpc, worker_pb2
from panda.server.v1 import (
    dispatch_service_pb2,
    dispatch_service_pb2_grpc,
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
)
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


@pytest.mark.parametrize(("map_type", "messenger"), [("NoJob", "grpc"), ("NoJob", "relay"),
                                                     ("OneToOne", "shared_files")])
def test_a_worker_gone_without_its_batch_system_noticing_is_missed_and_its_job_retried(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path, map_type: str, messenger: str) -> None:
    """Also through the relay and the shared files: a pilot that dies goes silent at the server
    as a direct one does."""
    harvester = run_harvester(tmp_path, server, identity, local_queue_config(
        mapType=map_type, maxWorkers=1, nQueueLimitWorker=1, messenger={"type": messenger}))
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
        # (A later attempt too may lose its heartbeat on a machine this loaded: the tests' timeout is 4 s.)
        assert done.state == job_pb2.Job.STATE_FINISHED and done.attempt >= 2, (done, harvester.log()[-3000:])
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
        jobs = submit(jobs_stub, *[_job("sleep 0.2") for _ in range(50)])
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


def test_relayed_pilots_run_jobs_and_take_kills_through_harvester(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    """Pilots given only harvester's address (and their worker's relay token): every message
    goes through harvester's DispatchService, a kill included."""
    config = local_queue_config(maxWorkers=2, nQueueLimitWorker=2, messenger={"type": "relay"})
    harvester = run_harvester(tmp_path, server, identity, config)
    try:
        quick = submit(jobs_stub, *[_job("echo relayed") for _ in range(4)])
        slow = submit(jobs_stub, _job("sleep 300"))[0]
        for job in quick:
            assert wait_for(jobs_stub, job.job_id, timeout=120).state == job_pb2.Job.STATE_FINISHED
        wait_for(jobs_stub, slow.job_id, lambda j: j.state == job_pb2.Job.STATE_RUNNING, timeout=60, what="running")
        # The pilots reached the server only through harvester: their address is harvester's, and
        # they hold no credential of the identity service's.
        pilots = [p for p in pilot_processes(harvester.access_points) if p.cmdline()[1:3] == ["-m", "pilot_agent"]]
        assert pilots
        for pilot in pilots:
            # What the worker was started with (the pilot itself hides its credentials from /proc).
            argv, environment = pilot.cmdline(), pilot.parent().environ()
            assert argv[argv.index("--server") + 1] == harvester.address
            assert environment["PANDA_TOKEN"].startswith("relay:") and not environment.get("PANDA_CLIENT_SECRET")
        jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[slow.job_id], reason="not needed"), timeout=10)
        killed = wait_for(jobs_stub, slow.job_id, timeout=60)
        assert killed.state == job_pb2.Job.STATE_CANCELLED, killed
        assert get_job(jobs_stub, slow.job_id).worker_id
    finally:
        harvester.stop()


def test_the_relay_admits_only_its_live_workers_pilots(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        tmp_path: Path) -> None:
    harvester = run_harvester(tmp_path, server, identity,
                              local_queue_config(maxWorkers=1, nQueueLimitWorker=1, messenger={"type": "relay"}))
    try:
        key = (harvester.data_dir / "harvester" / "relay.key").read_bytes()
        assert (harvester.data_dir / "harvester" / "relay.key").stat().st_mode & 0o777 == 0o600

        def hello(token: str | None, queue: str = "local") -> grpc.StatusCode:
            metadata = [("authorization", f"Bearer {token}")] if token else []
            with grpc.insecure_channel(harvester.address) as relay:
                call = dispatch_service_pb2_grpc.DispatchServiceStub(relay).Connect(
                    iter([dispatch_service_pb2.ConnectRequest(seq=1, hello=dispatch_service_pb2.Hello(
                        pilot_id="intruder", queue=queue))]), metadata=metadata, timeout=10)
                try:
                    next(call)
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

        assert hello(None) == grpc.StatusCode.UNAUTHENTICATED
        assert hello(identity.pilot_token()) == grpc.StatusCode.UNAUTHENTICATED  # not a relay token
        assert hello(relay_token(b"another harvester's key " * 2, "test-harvester-1")) == \
            grpc.StatusCode.UNAUTHENTICATED
        # A well-made token of a worker this harvester never started.
        assert hello(relay_token(key, "test-harvester-999")) == grpc.StatusCode.PERMISSION_DENIED
    finally:
        harvester.stop()


def test_shared_file_workers_run_pushed_jobs_and_take_kills_with_no_network(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    """Push, one job per worker, the shared-file messenger: harvester fetches each worker's job
    before submitting it; the pilot, given only a directory, reads its job there and writes its
    updates there; harvester does all the talking to the server, a kill included."""
    config = local_queue_config(mapType="OneToOne", maxWorkers=3, nQueueLimitWorker=3,
                                messenger={"type": "shared_files"})
    harvester = run_harvester(tmp_path, server, identity, config)
    try:
        quick = submit(jobs_stub, *[_job("echo pushed > out.txt") for _ in range(4)])
        for job in quick:
            assert wait_for(jobs_stub, job.job_id, timeout=120).state == job_pb2.Job.STATE_FINISHED
        workers = {w.worker_id: w for w in list_workers(channel)}
        ran = [get_job(jobs_stub, job.job_id).worker_id for job in quick]
        # One to one: every job had a worker of its own.
        assert len(set(ran)) == 4 and set(ran) <= set(workers)
        slow = submit(jobs_stub, _job("sleep 300"))[0]
        wait_for(jobs_stub, slow.job_id, lambda j: j.state == job_pb2.Job.STATE_RUNNING, timeout=60, what="running")
        worker_id = get_job(jobs_stub, slow.job_id).worker_id
        pilot = next(p for p in pilot_processes(harvester.access_points / worker_id)
                     if p.cmdline()[1:3] == ["-m", "pilot_agent"])
        argv, environment = pilot.cmdline(), pilot.parent().environ()
        assert argv[argv.index("--server") + 1] == f"file:{harvester.access_points / worker_id}/messenger"
        assert not any(environment.get(name) for name in ("PANDA_TOKEN", "PANDA_CLIENT_SECRET", "PANDA_TOKEN_FILE"))
        # The messages are files a person can read: the job's definition among them.
        streams = list((harvester.access_points / worker_id / "messenger").glob("stream-*/down/*.json"))
        assert any(f'"jobId": "{slow.job_id}"' in path.read_text() for path in streams)
        jobs_stub.KillJobs(job_service_pb2.KillJobsRequest(job_ids=[slow.job_id], reason="not needed"), timeout=10)
        assert wait_for(jobs_stub, slow.job_id, timeout=60).state == job_pb2.Job.STATE_CANCELLED
        wait_until(lambda: not pilot.is_running() or pilot.status() == psutil.STATUS_ZOMBIE, 30, "the pilot ended")
    finally:
        harvester.stop()


def test_a_push_worker_that_cannot_be_submitted_gives_its_job_back(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path, slurm_cluster: SlurmCluster) -> None:
    """The job fetcher took a job for a worker the batch system then refused: the job is not left
    with a pilot that will never come; it waits, activated, for the next one."""
    config = local_queue_config(mapType="OneToOne", maxWorkers=1, nQueueLimitWorker=1,
                                messenger={"type": "shared_files"},
                                submitter={"plugin": "slurm", "partition": "no-such-partition"})
    harvester = run_harvester(tmp_path, server, identity, config, extra_env={"SLURM_CONF": str(slurm_cluster.conf)})
    try:
        job = submit(jobs_stub, _job())[0]
        failed = wait_until(lambda: [w for w in list_workers(channel) if w.state == W.STATE_FAILED], 60,
                            "a worker the batch system refused")
        assert "partition" in failed[0].error.lower(), failed[0].error
        time.sleep(2)
        again = get_job(jobs_stub, job.job_id)
        assert again.state in (job_pb2.Job.STATE_ACTIVATED, job_pb2.Job.STATE_SENT), again
        wait_for(jobs_stub, job.job_id, lambda j: j.state == job_pb2.Job.STATE_ACTIVATED, timeout=30,
                 what="activated again")
        assert get_job(jobs_stub, job.job_id).attempt == 1  # given back, not failed
    finally:
        harvester.stop()


def test_many_to_one_packs_the_fetched_jobs_into_each_worker(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    config = local_queue_config(mapType="ManyToOne", nJobsPerWorker=2, maxWorkers=2, nQueueLimitWorker=2,
                                messenger={"type": "shared_files"},
                                resources={"cores": 2, "memoryMB": 4000, "walltimeSeconds": 3600})
    harvester = run_harvester(tmp_path, server, identity, config)
    try:
        jobs = submit(jobs_stub, *[_job("sleep 1") for _ in range(4)])
        for job in jobs:
            assert wait_for(jobs_stub, job.job_id, timeout=120).state == job_pb2.Job.STATE_FINISHED
        by_worker: dict[str, int] = {}
        for job in jobs:
            worker_id = get_job(jobs_stub, job.job_id).worker_id
            by_worker[worker_id] = by_worker.get(worker_id, 0) + 1
        assert sorted(by_worker.values()) == [2, 2], by_worker
    finally:
        harvester.stop()


def test_an_operators_new_limits_reach_harvester_and_outlive_its_restart(
        server: ServerHandle, identity: IdentityHandle, local_queue: str, channel: grpc.Channel,
        jobs_stub: job_service_pb2_grpc.JobServiceStub, tmp_path: Path) -> None:
    config = local_queue_config(maxWorkers=1, nQueueLimitWorker=1)
    harvester = run_harvester(tmp_path, server, identity, config)
    stub = harvester_service_pb2_grpc.HarvesterServiceStub(channel)
    try:
        wait_until(lambda: "registered with the server" in harvester.log(), 30, "harvester registered")
        stub.SetQueueLimits(harvester_service_pb2.SetQueueLimitsRequest(
            queue_id="local", limits=worker_pb2.QueueLimits(max_workers=3, queue_limit_workers=3,
                                                            max_new_workers_per_cycle=3)), timeout=10)
        wait_until(lambda: any(c.state == worker_pb2.HarvesterCommand.STATE_DONE for c in stub.ListHarvesterCommands(
            harvester_service_pb2.ListHarvesterCommandsRequest(harvester_id="test-harvester"), timeout=10).commands),
            30, "the command done")
        harvester.kill()
        harvester = run_harvester(tmp_path, server, identity, config)  # the file still says 1
        jobs = submit(jobs_stub, *[_job("sleep 4") for _ in range(3)])
        # Three workers at once: the limits the operator set, not the file's.
        wait_until(lambda: len([w for w in list_workers(channel) if w.state not in FINAL_WORKER_STATES]) == 3,
                   60, "three live workers")
        for job in jobs:
            assert wait_for(jobs_stub, job.job_id, timeout=120).state == job_pb2.Job.STATE_FINISHED
    finally:
        harvester.stop()
