#!/usr/bin/env python
"""JEDI benchmark: a task of N files, one file per job, from submission to every job activated
at the server (job generation), then the whole task to `done` with simulated pilots.

    python bench/jedi.py --db postgresql --files 10000
    python bench/jedi.py --db sqlite --files 2000

Phases: a fresh database and a server and JEDI (each its own process group, tools/cluster.py);
one queue; an input dataset of N files registered with DatasetService (the files need not
exist: the pilots are simulated); a task submitted with no scouts, one file per job.

1. Generation: from SubmitTask until ListJobs counts N jobs of the task ACTIVATED at the server
   (polled every 100 ms). JEDI refines the task, feeds N chunks, brokers and stores the jobs and
   submits them in batches of 5,000 (`jobs_generated_per_s` = N / that time).
2. End to end: P simulated pilots (real Connect streams, in a client process) take one job at a
   time (RUNNING, then FINISHED with the output file), until JEDI says the task is DONE; the
   output dataset must then hold N files. `task_end_to_end_s` runs from SubmitTask to DONE.

The last line printed is `jobs_generated_per_s=… task_end_to_end_s=…` plus extra keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tools/ is not an installed package

QUEUE = "bench"


# -- simulated pilots (a client process) ---------------------------------------------------------


async def _pilot(stub, index: int, finished, stopping: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    import grpc

    from panda.common.v1 import resources_pb2
    from panda.server.v1 import dispatch_service_pb2 as d
    from panda.server.v1 import job_pb2

    call = stub.Connect()
    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq += 1
        return seq

    await call.write(d.ConnectRequest(seq=next_seq(), hello=d.Hello(
        pilot_id=f"bench-pilot-{index}", queue=QUEUE, node=f"bench-node-{index % 10}", version="bench",
        resources=resources_pb2.Resources(cores=1, memory_mb=4000, walltime_seconds=86400))))
    while not stopping.is_set():
        await call.write(d.ConnectRequest(seq=next_seq(), request_jobs=d.RequestJobs(count=1)))
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            if message.WhichOneof("message") == "job_assignments":
                break
        for job in message.job_assignments.jobs:
            await call.write(d.ConnectRequest(seq=next_seq(), job_updates=d.JobUpdates(updates=[d.JobUpdate(
                job_id=job.job_id, attempt=job.attempt, state=job_pb2.Job.STATE_RUNNING)])))
            outputs = [job_pb2.JobFile(lfn=f.lfn, kind=f.kind, size_bytes=1000 + job.job_id % 1000,
                                       adler32=f"{job.job_id:08x}", storage_element=f.storage_element)
                       for f in job.files if f.kind == job_pb2.JobFile.KIND_OUTPUT]
            await call.write(d.ConnectRequest(seq=next_seq(), job_updates=d.JobUpdates(updates=[d.JobUpdate(
                job_id=job.job_id, attempt=job.attempt, state=job_pb2.Job.STATE_FINISHED, output_files=outputs,
                max_rss_mb=100, cpu_seconds=1.0)])))
            with finished.get_lock():
                finished.value += 1


async def _pilots(address: str, token: str, count: int, channels: int, finished, stop) -> None:  # type: ignore[no-untyped-def]
    from panda.server.v1 import dispatch_service_pb2_grpc
    from panda_runtime.client.channels import aio_channel
    from panda_runtime.client.credentials import StaticToken

    chans = [aio_channel(address, StaticToken(token), options=[("grpc.use_local_subchannel_pool", 1)])
             for _ in range(channels)]
    stubs = [dispatch_service_pb2_grpc.DispatchServiceStub(c) for c in chans]
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(_pilot(stubs[i % channels], i, finished, stopping)) for i in range(count)]
    await asyncio.to_thread(stop.wait)
    stopping.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for chan in chans:
        await chan.close()


def pilot_process(address: str, token: str, count: int, channels: int, finished, stop, errors) -> None:  # type: ignore[no-untyped-def]
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_pilots(address, token, count, channels, finished, stop))
    except BaseException as error:
        errors.put(f"{type(error).__name__}: {error}\n{traceback.format_exc()}")


# -- the benchmark ------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--files", type=int, default=10_000, help="input files = jobs (default 10,000)")
    parser.add_argument("--pilots", type=int, default=100, help="simulated pilots (default 100)")
    parser.add_argument("--channels", type=int, default=4, help="TCP connections of the pilots (default 4)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this long per phase, s")
    parser.add_argument("--jedi-env", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for JEDI, e.g. PANDA_JEDI_SUBMIT_BATCH=2500 (repeatable)")
    parser.add_argument("--profile-jedi", metavar="FILE", help="run JEDI under cProfile, stats written to FILE")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    args = parser.parse_args()


    from panda.jedi.v1 import (
        dataset_pb2,
        dataset_service_pb2,
        dataset_service_pb2_grpc,
        task_pb2,
        task_service_pb2,
        task_service_pb2_grpc,
    )
    from panda.server.v1 import (
        job_service_pb2,
        job_service_pb2_grpc,
        queue_pb2,
        queue_service_pb2,
        queue_service_pb2_grpc,
        storage_element_pb2,
        storage_service_pb2,
        storage_service_pb2_grpc,
    )
    from panda_cli.launcher import spawn, wait_healthy
    from panda_runtime.client.channels import sync_channel
    from panda_runtime.client.credentials import ClientCredentialsToken, StaticToken
    from tools.cluster import free_port, fresh_database, start_iam, start_server

    data_dir = Path(tempfile.mkdtemp(prefix="panda-bench-jedi-"))
    server = jedi = identity = None
    pilots = None
    stop = mp.get_context("spawn").Event()
    try:
        url = fresh_database(args.db, data_dir, "panda_bench_jedi")
        print(f"database: {args.db}; data dir {data_dir}", flush=True)
        identity = start_iam(data_dir / "iam")
        server = start_server(data_dir, url, {**identity.trust_env(), "PANDA_DISPATCH_POLL_SECONDS": "0.2"})
        jedi_address = f"127.0.0.1:{free_port()}"
        jedi_env = {**server.env, **identity.robot_env("panda-jedi"), "PANDA_JEDI": jedi_address,
                    "PANDA_JEDI_METRICS_PORT": "0", "PANDA_JEDI_INTERVAL_SECONDS": "0.2",
                    **dict(kv.split("=", 1) for kv in args.jedi_env)}
        profile = ["-m", "cProfile", "-o", str(Path(args.profile_jedi).resolve())] if args.profile_jedi else []
        jedi = spawn("jedi", [sys.executable, *profile, "-m", "jedi_svc"], jedi_env, data_dir / "logs" / "jedi.log")
        wait_healthy(jedi, jedi_address)
        admin = StaticToken(identity.token("admin"))
        server_channel = sync_channel(server.address, admin)
        jedi_channel = sync_channel(jedi_address, admin)
        pilot_token = ClientCredentialsToken(identity.issuer, "panda-pilot", identity.secrets["panda-pilot"]).token()
        jobs = job_service_pb2_grpc.JobServiceStub(server_channel)
        queues = queue_service_pb2_grpc.QueueServiceStub(server_channel)
        tasks = task_service_pb2_grpc.TaskServiceStub(jedi_channel)
        datasets = dataset_service_pb2_grpc.DatasetServiceStub(jedi_channel)
        se = "bench"
        storage_service_pb2_grpc.StorageServiceStub(server_channel).CreateStorageElement(
            storage_service_pb2.CreateStorageElementRequest(storage_element=storage_element_pb2.StorageElement(
                storage_element_id=se, url=(data_dir / "se").as_uri())), timeout=10)
        queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
            queue_id=QUEUE, status=queue_pb2.Queue.STATUS_ONLINE, storage_element=se)), timeout=10)
        started = time.monotonic()
        datasets.RegisterDataset(dataset_service_pb2.RegisterDatasetRequest(
            dataset=dataset_pb2.Dataset(dataset_id="bench.input"),
            files=[dataset_pb2.DatasetFile(lfn=f"bench.input.{i:06d}", size_bytes=1_000_000, adler32="0a0b0c0d",
                                           events=100, storage_elements=[se]) for i in range(args.files)],
        ), timeout=120)
        print(f"registered {args.files} files in {time.monotonic() - started:.2f} s", flush=True)

        # 1. Generation.
        params = task_pb2.TaskParams(
            task_name="bench", owner="bench", transformation=["/bin/true", "${IN}", "${OUT}"],
            input_datasets=["bench.input"], output_dataset="bench.output", scout_jobs=0, max_attempts=1,
            split_rule=task_pb2.SplitRule(files_per_job=1), max_failure_rate=1.0)
        import psutil

        procs = {"jedi": psutil.Process(jedi.pid), "server": psutil.Process(server.process.pid)}

        def cpu() -> dict[str, float]:
            return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}

        cpu_before = cpu()
        submitted = time.monotonic()
        task = tasks.SubmitTask(task_service_pb2.SubmitTaskRequest(params=params), timeout=30).task
        flt = f"task_id = {task.task_id} AND state = ACTIVATED"
        activated = 0
        last_print = submitted
        while True:
            activated = jobs.ListJobs(job_service_pb2.ListJobsRequest(page_size=1, filter=flt), timeout=30).total_size
            now = time.monotonic()
            if activated >= args.files:
                break
            if now - submitted > args.timeout:
                raise SystemExit(f"only {activated} of {args.files} jobs activated after {args.timeout} s")
            if now - last_print > 1:
                print(f"  {now - submitted:6.1f} s  {activated} jobs activated", flush=True)
                last_print = now
            time.sleep(0.1)
        generation = time.monotonic() - submitted
        generated_per_s = args.files / generation
        cpu_used = {name: used - cpu_before[name] for name, used in cpu().items()}
        print(f"generation: {args.files} jobs activated in {generation:.2f} s = {generated_per_s:.0f} jobs/s; "
              f"CPU: JEDI {cpu_used['jedi']:.2f} s, server {cpu_used['server']:.2f} s", flush=True)
        history = tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id), timeout=30).task.history
        start_ns = history[0].time.ToNanoseconds()
        for event in history:
            print(f"  +{(event.time.ToNanoseconds() - start_ns) / 1e9:5.2f} s  "
                  f"{task_pb2.Task.State.Name(event.state)[6:].lower():<10} {event.reason[:90]}", flush=True)

        # 2. End to end, with simulated pilots.
        ctx = mp.get_context("spawn")
        finished = ctx.Value("i", 0)
        errors = ctx.Queue()
        pilots = ctx.Process(target=pilot_process, args=(server.address, pilot_token, args.pilots, args.channels,
                                                         finished,
                                                         stop, errors), daemon=True)
        run_started = time.monotonic()
        pilots.start()
        state = task.state
        while True:
            task = tasks.GetTask(task_service_pb2.GetTaskRequest(task_id=task.task_id), timeout=30).task
            now = time.monotonic()
            if task.state in (task_pb2.Task.STATE_DONE, task_pb2.Task.STATE_FINISHED, task_pb2.Task.STATE_FAILED,
                              task_pb2.Task.STATE_BROKEN, task_pb2.Task.STATE_EXHAUSTED):
                break
            if not errors.empty():
                raise SystemExit(f"pilots failed: {errors.get()}")
            if now - run_started > args.timeout:
                raise SystemExit(f"task not done after {args.timeout} s: {task.progress}")
            if now - last_print > 1:
                print(f"  {now - submitted:6.1f} s  pilots finished {finished.value}, JEDI counts "
                      f"{task.progress.files_finished} files done", flush=True)
                last_print = now
            state = task.state
            time.sleep(0.1)
        end_to_end = time.monotonic() - submitted
        run_phase = time.monotonic() - run_started
        if task.state != task_pb2.Task.STATE_DONE:
            raise SystemExit(f"task ended {task_pb2.Task.State.Name(task.state)}: {task.state_reason}")
        output = datasets.GetDataset(dataset_service_pb2.GetDatasetRequest(dataset_id="bench.output"),
                                     timeout=30).dataset
        if output.file_count != args.files:
            raise SystemExit(f"output dataset has {output.file_count} files, expected {args.files}")
        del state
        print(f"end to end: task done in {end_to_end:.2f} s (pilots' phase {run_phase:.2f} s, "
              f"{args.files / run_phase:.0f} jobs/s); output dataset {output.file_count} files", flush=True)
        print(f"jobs_generated_per_s={generated_per_s:.0f} task_end_to_end_s={end_to_end:.2f} "
              f"generation_s={generation:.2f} run_phase_jobs_per_s={args.files / run_phase:.0f} db={args.db} "
              f"files={args.files} pilots={args.pilots}", flush=True)
        return 0
    finally:
        stop.set()
        if pilots is not None:
            pilots.join(10)
            if pilots.is_alive():
                pilots.kill()
        for process in (jedi, server, identity):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
