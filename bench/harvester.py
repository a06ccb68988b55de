#!/usr/bin/env python
"""Harvester benchmark: how soon work on an empty queue gets a pilot, how fast harvester's pilots
get through it, and what the worker adjuster's decisions cost for 1,000 queues.

    python bench/harvester.py --db postgresql                 # 1,000 /bin/true jobs, 8 workers
    python bench/harvester.py --db sqlite --jobs 200 --queues 100

1. Pilots from nothing. An identity service, a server (fresh database) and a harvester, each its
   own process (tools/cluster.py); the harvester runs as the `panda-harvester` robot and gives its
   pilots the `panda-pilot` robot's credentials. One queue, `bench`, with no pilot; its
   configuration: local plugin, NoJob (pull), limits from the flags. Once harvester has
   registered and done its first (idle) cycle, N `/bin/true` jobs are submitted at once; the
   harvester's adjuster sees them at its next round and starts real pilots (local processes),
   which run every job to FINISHED. Times come from the server's own records (each job's
   start_time and end_time, each worker's submit and start time), not from polling.
2. The adjuster's arithmetic in process: `adjust_workers` over 1,000 generated QueueLoads
   (mixed map types, limits, statuses, job and worker counts), best of `--adjust-runs`.
3. One whole adjuster+submitter round for 1,000 queues against the real server, in process with
   harvester's own pieces (`Harvester.adjust_and_submit`: GetQueueLoads for every queue, the
   worker counts from harvester's table, the decisions): 1,000 queues created on the server,
   activated jobs on some of them, live workers in harvester's table; every decision comes out
   0 (the queues with jobs have maxWorkers 0), so nothing is submitted and rounds repeat alike.

The issue's targets: the first pilot runs a job within 5 s of the first submit; 1,000 queues
adjusted in under 1 s. The last line printed is exactly

    first_job_running_s=... jobs_per_s=... adjust_1000_queues_ms=...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/ is not an installed package

import grpc
import psutil

from harvester_svc.domain.adjuster import QueueLoad, adjust_workers
from harvester_svc.domain.queue_config import QueueConfig, load_queue_config
from harvester_svc.domain.workers import WorkerState
from harvester_svc.settings import HarvesterSettings
from panda.common.v1 import resources_pb2
from panda.harvester.v1 import harvester_service_pb2, harvester_service_pb2_grpc, worker_pb2
from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
    storage_element_pb2,
    storage_service_pb2,
    storage_service_pb2_grpc,
)
from panda_runtime.client.channels import sync_channel
from panda_runtime.client.credentials import StaticToken
from tools.cluster import (
    HarvesterHandle,
    IdentityHandle,
    ServerHandle,
    drop_database,
    fresh_database,
    start_harvester,
    start_iam,
    start_server,
)

QUEUE = "bench"
SUBMIT_BATCH = 5000
HARVESTER_ID = "bench-harvester"
ROUND_HARVESTER_ID = "bench-round"
# adjust_1000_queues_ms: the adjuster's arithmetic alone, always over this many queues.
ADJUST_QUEUES = 1000
# What each job asks for: less than each worker (1 core, 2000 MB, 1 h) offers.
JOB_MEMORY_MB, JOB_WALLTIME_S = 1000, 1800
DEFAULT_CYCLE_SECONDS = float(HarvesterSettings.model_fields["harvester_cycle_seconds"].default)
DEFAULT_SUBMIT_SECONDS = float(HarvesterSettings.model_fields["harvester_submit_seconds"].default)


class Interrupted(Exception):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted(f"signal {signum}")


# ---- generated queues (phases 2 and 3) -----------------------------------------------------------


def queue_bodies(count: int, rng: random.Random, *, with_jobs: set[str] | None = None) -> dict[str, dict[str, Any]]:
    """`count` queue configurations as an operator writes them: mostly pull queues, some push
    (OneToOne, ManyToOne), a few offline, limits of every size and some left out. A queue named
    in `with_jobs` gets maxWorkers 0 (and limits within it): it may hold work, but gets no worker."""
    bodies: dict[str, dict[str, Any]] = {}
    for index in range(count):
        name = f"bench-q{index:04d}"
        map_type = rng.choices(["NoJob", "OneToOne", "ManyToOne"], weights=[70, 20, 10])[0]
        max_workers = 0 if with_jobs is not None and name in with_jobs else rng.choice([0, 5, 20, 100, 500, 2000])
        body: dict[str, Any] = {
            "queueStatus": "offline" if rng.random() < 0.05 else "online", "mapType": map_type,
            "maxWorkers": max_workers, "submitter": {"plugin": "local"},
            "resources": {"cores": rng.choice([1, 1, 8]), "memoryMB": rng.choice([2000, 4000, 16000]),
                          "walltimeSeconds": rng.choice([3600, 86400, 172800])},
        }
        if rng.random() < 0.7:
            body["nQueueLimitWorker"] = rng.randint(0, max_workers)
        if rng.random() < 0.5:
            body["maxNewWorkersPerCycle"] = rng.randint(0, max_workers)
        if map_type != "NoJob" and rng.random() < 0.5:
            body["nQueueLimitJob"] = rng.randint(0, 5000)
        if map_type == "ManyToOne":
            body["nJobsPerWorker"] = rng.randint(2, 16)
        bodies[name] = body
    return bodies


def generated_loads(count: int, seed: int) -> list[QueueLoad]:
    """QueueLoads of `count` generated queues: 4 in 10 with no activated job, the rest up to
    20,000; live workers by state up to a bit over each queue's maxWorkers (limits an operator
    lowered); push queues with jobs fetched ahead."""
    rng = random.Random(seed)
    configs = load_queue_config(json.dumps(queue_bodies(count, rng)))
    loads = []
    for config in configs.values():
        activated = 0 if rng.random() < 0.4 else int(rng.paretovariate(1.2) * 50) % 20_000
        ceiling = config.max_workers + config.max_workers // 10 + 1
        workers = {state: rng.randint(0, ceiling // 4) for state in
                   (WorkerState.SUBMITTED, WorkerState.READY, WorkerState.RUNNING, WorkerState.IDLE)
                   if rng.random() < 0.8}
        if rng.random() < 0.3:
            workers[WorkerState.FINISHED] = rng.randint(0, 1000)
        fetched = rng.randint(0, 500) if config.map_type.is_push else 0
        loads.append(QueueLoad(config, activated, workers, fetched))
    return loads


def time_adjuster(count: int, runs: int, seed: int) -> tuple[list[float], Counter[str]]:
    """Seconds of each `adjust_workers` call over the same `count` loads, and how often each
    limit decided (to show the mix)."""
    loads = generated_loads(count, seed)
    decisions = adjust_workers(loads)  # warm up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        adjust_workers(loads)
        times.append(time.perf_counter() - started)
    return times, Counter(str(decision.limit) for decision in decisions)


# ---- processes and their CPU -------------------------------------------------------------------


def tree_cpu(root: psutil.Process) -> tuple[float, float]:
    """CPU seconds (user + system) of `root` itself, and of every process below it: those still
    running (with what they reaped) and those it reaped (psutil's children_* times)."""
    own = root.cpu_times()
    below = own.children_user + own.children_system
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            below += times.user + times.system + times.children_user + times.children_system
    return own.user + own.system, below


def own_cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def stop_pilots(access_points: Path) -> int:
    """SIGKILL to the process group of every pilot the benchmark's harvester started that is still
    there (harvester stops its workers itself when it stops; this is for when it could not). Each
    worker's group is the one its local plugin made, found in its access point's batch.json; a
    process of that pid that started at another time is someone else's and is left alone."""
    stopped = 0
    for batch_file in access_points.glob("*/batch.json") if access_points.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, psutil.Error):
            batch = json.loads(batch_file.read_text())
            pid = int(batch["pid"])
            if psutil.pid_exists(pid) and psutil.Process(pid).create_time() != batch["create_time"]:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                stopped += 1
    return stopped


# ---- the server's side ---------------------------------------------------------------------------


def submit_jobs(channel: grpc.Channel, queues: list[str], count: int, label: str) -> float:
    """`count` /bin/true jobs (one attempt each), spread round-robin over `queues`; the seconds
    the SubmitJobs calls took."""
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    resources = resources_pb2.Resources(cores=1, memory_mb=JOB_MEMORY_MB, walltime_seconds=JOB_WALLTIME_S)
    started = time.monotonic()
    for first in range(0, count, SUBMIT_BATCH):
        batch = [job_pb2.Job(queue=queues[i % len(queues)], command=["/bin/true"], max_attempts=1, label=label,
                             resources=resources) for i in range(first, min(count, first + SUBMIT_BATCH))]
        reply = stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=batch, request_id=f"{label}-{first}"),
                                timeout=300)
        if len(reply.jobs) != len(batch):
            raise RuntimeError(f"submitted {len(batch)} jobs, the server returned {len(reply.jobs)}")
    return time.monotonic() - started


def job_counts(channel: grpc.Channel, queue: str) -> dict[str, int]:
    """The queue's jobs by state (STATE_FINISHED: 12, ...)."""
    response = job_service_pb2_grpc.JobServiceStub(channel).CountJobs(
        job_service_pb2.CountJobsRequest(filter=f'queue = "{queue}"', group_by=["state"]), timeout=30)
    return {group.values[0]: int(group.count) for group in response.groups}


def all_jobs(channel: grpc.Channel, queue: str) -> Iterator[job_pb2.Job]:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    token = ""
    while True:
        page = stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000, page_token=token,
                                                             filter=f'queue = "{queue}"'), timeout=60)
        yield from page.jobs
        token = page.next_page_token
        if not token:
            return


def all_workers(channel: grpc.Channel, harvester_id: str) -> list[worker_pb2.Worker]:
    stub = harvester_service_pb2_grpc.HarvesterServiceStub(channel)
    found: list[worker_pb2.Worker] = []
    token = ""
    while True:
        page = stub.ListWorkers(harvester_service_pb2.ListWorkersRequest(page_size=1000, page_token=token,
                                                                         harvester_id=harvester_id), timeout=30)
        found += page.workers
        token = page.next_page_token
        if not token:
            return found


def seconds(stamp: Any) -> float:
    """A protobuf Timestamp as Unix seconds (0.0 when unset)."""
    return float(stamp.seconds + stamp.nanos / 1e9)


def create_storage_and_queues(channel: grpc.Channel, se_dir: Path, queue_ids: list[str]) -> None:
    storage = storage_service_pb2_grpc.StorageServiceStub(channel)
    with contextlib.suppress(grpc.RpcError):  # made once, by the first call
        se_dir.mkdir(parents=True, exist_ok=True)
        storage.CreateStorageElement(storage_service_pb2.CreateStorageElementRequest(
            storage_element=storage_element_pb2.StorageElement(storage_element_id="bench", url=se_dir.as_uri())),
            timeout=10)
    queues = queue_service_pb2_grpc.QueueServiceStub(channel)
    for queue_id in queue_ids:
        queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
            queue_id=queue_id, status=queue_pb2.Queue.STATUS_ONLINE, storage_element="bench")), timeout=10)


# ---- phase 1: pilots from nothing ----------------------------------------------------------------


@dataclass
class PilotsResult:
    first_job_running_s: float
    jobs_per_s: float
    workers_started: int
    cpu_ms_per_job: dict[str, float]


def harvester_env(identity: IdentityHandle, args: argparse.Namespace) -> dict[str, str]:
    env = {**identity.robot_env("panda-harvester"),
           "PANDA_HARVESTER_PILOT_CLIENT_ID": "panda-pilot",
           "PANDA_HARVESTER_PILOT_CLIENT_SECRET": identity.secrets["panda-pilot"],
           # Its pilots end with it: the benchmark leaves nothing running.
           "PANDA_HARVESTER_STOP_WORKERS_ON_EXIT": "true", "PANDA_HARVESTER_KILL_GRACE_SECONDS": "3"}
    if args.cycle_seconds is not None:
        env["PANDA_HARVESTER_CYCLE_SECONDS"] = str(args.cycle_seconds)
    if args.submit_seconds is not None:
        env["PANDA_HARVESTER_SUBMIT_SECONDS"] = str(args.submit_seconds)
    return env


def pilots_from_nothing(args: argparse.Namespace, data_dir: Path, server: ServerHandle, identity: IdentityHandle,
                        channel: grpc.Channel, started: list[HarvesterHandle]) -> PilotsResult:
    create_storage_and_queues(channel, data_dir / "se", [QUEUE])
    queue: dict[str, Any] = {"queueStatus": "online", "mapType": "NoJob", "maxWorkers": args.max_workers,
                             "nQueueLimitWorker": args.queue_limit_workers or args.max_workers,
                             "maxNewWorkersPerCycle": args.max_new_workers_per_cycle,
                             "resources": {"cores": 1, "memoryMB": 2000, "walltimeSeconds": 3600},
                             "submitter": {"plugin": "local"}}
    harvester_dir = data_dir / "harvester"
    harvester_dir.mkdir(parents=True, exist_ok=True)
    config_path = harvester_dir / "queueconfig.json"
    config_path.write_text(json.dumps({QUEUE: queue}))
    print(f"queue {QUEUE}: {json.dumps(queue)}", flush=True)
    cycle = args.cycle_seconds if args.cycle_seconds is not None else DEFAULT_CYCLE_SECONDS
    submit_every = args.submit_seconds if args.submit_seconds is not None else DEFAULT_SUBMIT_SECONDS
    harvester = start_harvester(harvester_dir, server_address=server.address, database_url=server.database_url,
                                queue_config=config_path, harvester_id=HARVESTER_ID,
                                extra_env=harvester_env(identity, args))
    started.append(harvester)
    assert harvester.process is not None and server.process is not None
    print(f"harvester pid {harvester.process.pid}, cycle {cycle:g} s "
          f"({'harvester default' if args.cycle_seconds is None else '--cycle-seconds'}), adjuster and submitter "
          f"between cycles every {submit_every:g} s "
          f"({'harvester default' if args.submit_seconds is None else '--submit-seconds'})", flush=True)
    # Registered, then its first cycle runs at once and finds nothing to do: the jobs come after
    # it and wait for the adjuster's next round (between cycles, every harvester_submit_seconds).
    deadline = time.monotonic() + 60
    while "registered with the server" not in harvester.log():
        if time.monotonic() > deadline or not harvester.process.alive():
            raise RuntimeError(f"harvester did not register:\n{harvester.log()[-3000:]}")
        time.sleep(0.1)
    time.sleep(args.submit_after)
    if all_workers(channel, HARVESTER_ID):
        raise RuntimeError("harvester started workers before there was any work")

    server_process, harvester_process = psutil.Process(server.process.pid), psutil.Process(harvester.process.pid)
    server_cpu = own_cpu(server_process)
    harvester_cpu, pilots_cpu = tree_cpu(harvester_process)
    machine_cpu = psutil.cpu_times()
    submitted_at = time.time()
    submit_s = submit_jobs(channel, [QUEUE], args.jobs, "bench")
    print(f"submitted {args.jobs} jobs in {submit_s:.2f} s", flush=True)

    last_print = t0 = time.monotonic()
    while True:
        counts = job_counts(channel, QUEUE)
        finished = counts.get("STATE_FINISHED", 0)
        ended_badly = {state: n for state, n in counts.items()
                       if state in ("STATE_FAILED", "STATE_CANCELLED", "STATE_CLOSED") and n}
        if ended_badly:
            raise RuntimeError(f"jobs did not finish: {ended_badly}; harvester log tail:\n{harvester.log()[-2000:]}")
        if finished >= args.jobs:
            break
        if not harvester.process.alive() or not server.process.alive():
            raise RuntimeError("harvester or the server died")
        now = time.monotonic()
        if now - t0 > args.timeout:
            raise RuntimeError(f"timeout: {finished}/{args.jobs} finished after {args.timeout:.0f} s: {counts}")
        if now - last_print >= 2:
            live = sum(1 for w in all_workers(channel, HARVESTER_ID)
                       if w.state in (worker_pb2.Worker.STATE_SUBMITTED, worker_pb2.Worker.STATE_READY,
                                      worker_pb2.Worker.STATE_RUNNING, worker_pb2.Worker.STATE_IDLE))
            shown = ", ".join(f"{state.removeprefix('STATE_').lower()} {n}" for state, n in sorted(counts.items()))
            print(f"  [{now - t0:6.1f}s] {shown}; live workers (as last reported) {live}", flush=True)
            last_print = now
        time.sleep(0.25)
    server_cpu = own_cpu(server_process) - server_cpu
    harvester_after, pilots_after = tree_cpu(harvester_process)
    harvester_cpu, pilots_cpu = harvester_after - harvester_cpu, pilots_after - pilots_cpu
    machine_after = psutil.cpu_times()
    machine_busy = sum(machine_after) - sum(machine_cpu) - (machine_after.idle - machine_cpu.idle) - (
        machine_after.iowait - machine_cpu.iowait)

    # The server's own record of each job and worker.
    jobs = list(all_jobs(channel, QUEUE))
    if len(jobs) != args.jobs or any(job.state != job_pb2.Job.STATE_FINISHED for job in jobs):
        raise RuntimeError(f"expected {args.jobs} finished jobs, the server lists {len(jobs)}")
    first = min(jobs, key=lambda job: seconds(job.start_time))
    last_end = max(seconds(job.end_time) for job in jobs)
    first_running_s = seconds(first.start_time) - submitted_at
    jobs_per_s = args.jobs / (last_end - submitted_at)
    # Workers as harvester reported them (its propagator runs at the end of each cycle).
    deadline = time.monotonic() + cycle + 10
    while True:
        workers = all_workers(channel, HARVESTER_ID)
        ran = {job.worker_id for job in jobs}
        if ran <= {w.worker_id for w in workers} and all(w.start_time.seconds for w in workers):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"harvester did not report the workers that ran the jobs: {sorted(ran)}")
        time.sleep(0.5)
    first_worker = min(workers, key=lambda w: seconds(w.submit_time))
    first_job = job_service_pb2_grpc.JobServiceStub(channel).GetJob(
        job_service_pb2.GetJobRequest(job_id=first.job_id), timeout=30).job
    sent_at = next((seconds(e.time) for e in first_job.history if e.state == job_pb2.Job.STATE_SENT), 0.0)
    per_worker = Counter(job.worker_id for job in jobs)

    print("results (pilots from nothing):")
    print(f"  harvester cycle {cycle:g} s, adjuster and submitter every {submit_every:g} s; jobs submitted "
          f"{args.submit_after:g} s after its first (idle) cycle")
    worker_submitted, worker_started = seconds(first_worker.submit_time), seconds(first_worker.start_time)
    print(f"  first submit -> first worker submitted by harvester  {worker_submitted - submitted_at:6.2f} s")
    print(f"               -> its process started                 {worker_started - submitted_at:6.2f} s")
    print(f"               -> first job sent to a pilot           {sent_at - submitted_at:6.2f} s")
    print(f"               -> first job RUNNING                   {first_running_s:6.2f} s  (target: 5 s)")
    print(f"  {args.jobs} jobs finished in {last_end - submitted_at:.2f} s from the first submit: "
          f"{jobs_per_s:.1f} jobs/s")
    print(f"  workers started: {len(workers)} (maxWorkers {args.max_workers}); jobs per worker: "
          f"{min(per_worker.values())}-{max(per_worker.values())}")
    cpu = {"server": server_cpu, "harvester": harvester_cpu, "pilots+payloads": pilots_cpu}
    cpu_ms = {name: 1000 * value / args.jobs for name, value in cpu.items()}
    print("  CPU per job (first submit -> all finished): "
          + ", ".join(f"{name} {value:.1f} ms" for name, value in cpu_ms.items())
          + f"; the whole machine {1000 * machine_busy / args.jobs:.1f} ms (database and anything else "
            f"running here included)", flush=True)
    return PilotsResult(first_running_s, jobs_per_s, len(workers), cpu_ms)


# ---- phase 3: one adjuster+submitter round for 1,000 queues against the server --------------------


@dataclass
class RoundResult:
    rounds_s: list[float]
    queue_loads_s: list[float]
    counts_s: list[float]
    decisions_s: list[float]
    live_workers: int
    limits: Counter[str]


def round_queues(count: int, seed: int) -> tuple[dict[str, QueueConfig], list[str]]:
    """`count` queues, the configuration harvester reads, and those of them that get jobs: about
    half, each with maxWorkers 0 (so no decision submits anything)."""
    rng = random.Random(seed)
    names = [f"bench-q{index:04d}" for index in range(count)]
    with_jobs = set(rng.sample(names, count // 2))
    return load_queue_config(json.dumps(queue_bodies(count, rng, with_jobs=with_jobs))), sorted(with_jobs)


def fill_worker_table(url: str, configs: dict[str, QueueConfig], seed: int, access_root: str) -> int:
    """Live workers of the round's harvester in its table (never started anywhere: no round runs
    the monitor), a few per queue that may have any, in every live state; how many."""
    from harvester_svc.store.worker_store import NewWorker, WorkerStore
    from panda_runtime.service.db import make_engine

    rng = random.Random(seed)
    engine = make_engine(url)
    try:
        store = WorkerStore(engine)
        new = [NewWorker(config.name, "local", 1, 2000, 3600, access_root)
               for config in configs.values() if config.max_workers
               for _ in range(rng.randint(0, min(4, config.max_workers)))]
        now = datetime.now(UTC)
        workers = store.create(ROUND_HARVESTER_ID, new, now)
        states = [WorkerState.SUBMITTED, WorkerState.READY, WorkerState.RUNNING, WorkerState.RUNNING, WorkerState.IDLE]
        store.change({w.worker_id: {"state": rng.choice(states), "batch_id": "0"} for w in workers}, now)
        return len(workers)
    finally:
        engine.dispose()


async def _rounds(args: argparse.Namespace, data_dir: Path, server: ServerHandle, identity: IdentityHandle,
                  configs: dict[str, QueueConfig]) -> tuple[list[float], list[float], list[float], list[float]]:
    from harvester_svc.logic.agents import Harvester
    from harvester_svc.logic.pilots import PilotLaunch
    from harvester_svc.logic.plugins.local import LocalPlugin
    from harvester_svc.logic.server_link import ServerLink
    from harvester_svc.store.worker_store import WorkerStore
    from panda_runtime.client import ConnectConfig
    from panda_runtime.client.credentials import ClientCredentialsToken
    from panda_runtime.service.db import DbRunner, make_engine

    settings = HarvesterSettings(
        data_dir=data_dir / "round", database_url=server.database_url, server_address=server.address,
        harvester_id=ROUND_HARVESTER_ID, harvester_metrics_port=0, iam_issuer=identity.issuer,
    )
    db = DbRunner(make_engine(server.database_url))
    link = ServerLink(ConnectConfig(server.address, deadline=60, tokens=ClientCredentialsToken(
        identity.issuer, "panda-harvester", identity.secrets["panda-harvester"])), ROUND_HARVESTER_ID)
    store = WorkerStore(db.engine)
    harvester = Harvester(settings, db, store, link, {"local": LocalPlugin()}, configs,
                          PilotLaunch(settings, secrets.token_bytes(32)))
    names = sorted(configs)
    rounds, loads_s, counts_s, decisions_s = [], [], [], []
    try:
        for attempt in range(args.round_runs + 1):  # the first warms up the connection and caches
            started = time.perf_counter()
            submitted = await harvester.adjust_and_submit()
            took = time.perf_counter() - started
            if submitted:
                raise RuntimeError(f"a round submitted {submitted} workers; none was expected")
            # The same pieces, one at a time.
            t0 = time.perf_counter()
            work = await link.queue_work(names)
            t1 = time.perf_counter()
            counts = await db.run(store.counts, ROUND_HARVESTER_ID)
            t2 = time.perf_counter()
            loads = [QueueLoad(configs[name], work[name].activated_jobs, counts.get(name, {}))
                     for name in names if name in work]
            decisions = adjust_workers(loads)
            t3 = time.perf_counter()
            if len(decisions) != len(configs) or any(d.new_workers for d in decisions):
                raise RuntimeError(f"{len(decisions)} decisions for {len(configs)} queues, or some submit workers")
            if attempt:
                rounds.append(took)
                loads_s.append(t1 - t0)
                counts_s.append(t2 - t1)
                decisions_s.append(t3 - t2)
    finally:
        await link.close()
        db.close()
    return rounds, loads_s, counts_s, decisions_s


def adjuster_round(args: argparse.Namespace, data_dir: Path, server: ServerHandle, identity: IdentityHandle,
                   channel: grpc.Channel) -> RoundResult:
    configs, with_jobs = round_queues(args.queues, args.seed)
    started = time.monotonic()
    create_storage_and_queues(channel, data_dir / "se", sorted(configs))
    print(f"round: {len(configs)} queues created on the server in {time.monotonic() - started:.1f} s", flush=True)
    if with_jobs and args.round_jobs:
        submit_s = submit_jobs(channel, with_jobs, args.round_jobs, "round")
        print(f"round: {args.round_jobs} activated jobs over {len(with_jobs)} of them (maxWorkers 0) "
              f"in {submit_s:.1f} s", flush=True)
    live = fill_worker_table(server.database_url, configs, args.seed, str(data_dir / "round" / "workers"))
    print(f"round: {live} live workers of {ROUND_HARVESTER_ID} in harvester's table", flush=True)
    rounds, loads_s, counts_s, decisions_s = asyncio.run(_rounds(args, data_dir, server, identity, configs))
    limits = Counter(str(decision.limit) for decision in adjust_workers(
        QueueLoad(config, 0, {}) for config in configs.values()))
    return RoundResult(rounds, loads_s, counts_s, decisions_s, live, limits)


# ---- the run ---------------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    return f"best {1000 * min(values):.2f} ms, median {1000 * statistics.median(values):.2f} ms"


def run(args: argparse.Namespace) -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="panda-bench-harvester-"))
    identity: IdentityHandle | None = None
    server: ServerHandle | None = None
    harvesters: list[HarvesterHandle] = []
    url = ""
    ok = False
    try:
        print(f"harvester benchmark: db={args.db} jobs={args.jobs} maxWorkers={args.max_workers} "
              f"queues={args.queues} (data in {data_dir})", flush=True)
        # 2. The adjuster alone, first: nothing else of the benchmark runs yet.
        adjust_times, adjust_limits = time_adjuster(ADJUST_QUEUES, args.adjust_runs, args.seed)
        adjust_ms = 1000 * min(adjust_times)
        print(f"adjust_workers over {ADJUST_QUEUES} generated queues ({args.adjust_runs} runs): {_ms(adjust_times)}; "
              f"decided by: " + ", ".join(f"{limit} {n}" for limit, n in adjust_limits.most_common()), flush=True)

        url = fresh_database(args.db, data_dir, args.db_name)
        identity = start_iam(data_dir / "iam")
        server = start_server(data_dir, url, identity.trust_env())
        assert server.process is not None
        print(f"server pid {server.process.pid} on {server.address}", flush=True)
        with sync_channel(server.address, StaticToken(identity.token("admin"))) as channel:
            # 1. Pilots from nothing.
            pilots = pilots_from_nothing(args, data_dir, server, identity, channel, harvesters)
            for harvester in harvesters:  # its pilots stop with it (a kill grace of 3 s)
                if harvester.process is not None:
                    harvester.process.stop(30)
            # 3. One round for many queues against the server, the pilots gone.
            rounds = adjuster_round(args, data_dir, server, identity, channel)
        print(f"results (one adjuster+submitter round, {args.queues} queues, {rounds.live_workers} live workers, "
              f"{args.round_runs} rounds):")
        print(f"  Harvester.adjust_and_submit     {_ms(rounds.rounds_s)}")
        print(f"    GetQueueLoads                 {_ms(rounds.queue_loads_s)}")
        print(f"    worker counts (harvester db)  {_ms(rounds.counts_s)}")
        print(f"    decisions (adjust_workers)    {_ms(rounds.decisions_s)}")
        print(f"results (adjust_workers alone, {ADJUST_QUEUES} generated queues): {_ms(adjust_times)} (target: 1 s)")
        cpu = " ".join(f"cpu_{name.replace('+', '_')}_ms_per_job={value:.2f}" for name, value in
                       pilots.cpu_ms_per_job.items())
        print(f"workers_started={pilots.workers_started} {cpu} "
              f"harvester_round_ms={1000 * min(rounds.rounds_s):.1f} round_queues={args.queues} "
              f"cycle_seconds={args.cycle_seconds if args.cycle_seconds is not None else DEFAULT_CYCLE_SECONDS:g} "
              f"submit_seconds={args.submit_seconds if args.submit_seconds is not None else DEFAULT_SUBMIT_SECONDS:g}")
        print(f"first_job_running_s={pilots.first_job_running_s:.2f} jobs_per_s={pilots.jobs_per_s:.1f} "
              f"adjust_1000_queues_ms={adjust_ms:.3f}", flush=True)
        ok = True
        return 0
    finally:
        for harvester in harvesters:
            harvester.stop()
            if not ok or (harvester.process is not None and harvester.process.returncode not in (0, -15, None)):
                print(f"harvester log tail ({harvester.log_file()}):\n{harvester.log()[-2000:]}", file=sys.stderr)
            leftover = stop_pilots(harvester.access_points)
            if leftover:
                print(f"stopped {leftover} pilots harvester left behind", file=sys.stderr)
        if server is not None:
            server.stop()
            if not ok:
                print(f"server log tail ({server.log_file()}):\n{server.log()[-2000:]}", file=sys.stderr)
        if identity is not None:
            identity.stop()
        if url and not args.keep:
            drop_database(url)
        if args.keep:
            print(f"kept {data_dir}", file=sys.stderr)
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--db-name", default="panda_bench_harvester",
                        help="PostgreSQL database (dropped and recreated)")
    parser.add_argument("--jobs", type=int, default=1000, help="/bin/true jobs on the empty queue (default 1,000)")
    parser.add_argument("--max-workers", type=int, default=8, help="the queue's maxWorkers (default 8: 2 cores)")
    parser.add_argument("--queue-limit-workers", type=int, default=0,
                        help="the queue's nQueueLimitWorker (default: maxWorkers)")
    parser.add_argument("--max-new-workers-per-cycle", type=int, default=0,
                        help="the queue's maxNewWorkersPerCycle (default 0: no limit per cycle)")
    parser.add_argument("--cycle-seconds", type=float, default=None,
                        help=f"harvester's PANDA_HARVESTER_CYCLE_SECONDS (default: harvester's own, "
                             f"{DEFAULT_CYCLE_SECONDS:g} s)")
    parser.add_argument("--submit-seconds", type=float, default=None,
                        help=f"harvester's PANDA_HARVESTER_SUBMIT_SECONDS (default: harvester's own, "
                             f"{DEFAULT_SUBMIT_SECONDS:g} s); at or above the cycle, new work waits for the cycle")
    parser.add_argument("--submit-after", type=float, default=1.0,
                        help="seconds between harvester's registration (its first, idle cycle) and the first "
                             "submit (default 1)")
    parser.add_argument("--queues", type=int, default=1000,
                        help="queues of the whole adjuster+submitter round against the server (default 1,000)")
    parser.add_argument("--round-jobs", type=int, default=5000,
                        help="activated jobs spread over half the round's queues (default 5,000)")
    parser.add_argument("--adjust-runs", type=int, default=20, help="adjust_workers calls timed (default 20)")
    parser.add_argument("--round-runs", type=int, default=10, help="adjuster+submitter rounds timed (default 10)")
    parser.add_argument("--seed", type=int, default=1, help="of the generated queues")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds the jobs may take (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs) and the database")
    args = parser.parse_args(argv)
    if min(args.jobs, args.max_workers, args.queues, args.adjust_runs, args.round_runs) < 1:
        parser.error("--jobs, --max-workers, --queues, --adjust-runs and --round-runs must be positive")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        return run(args)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; everything the benchmark started is stopped", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"BENCHMARK FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
