#!/usr/bin/env python
"""Dispatch benchmark: how fast one server hands jobs to pilots over the Connect stream.

    python bench/dispatch.py --db postgresql --mode protocol            # 20,000 jobs, 100 pilots
    python bench/dispatch.py --db sqlite --jobs 2000 --pilots 20
    python bench/dispatch.py --db postgresql --mode process --jobs 5000

Phases: a fresh database and a server (own process group, tools/cluster.py); one queue;
N jobs submitted in batches of up to 5,000; P simulated pilots on real gRPC streams, spread
over client processes and channels, each taking one job at a time (RequestJobs count=1,
RUNNING, [/bin/true in process mode], FINISHED, RequestJobs again); a check through
ListJobs that all N jobs finished; then idle streams (Hello only) held open to measure the
server's memory per stream. See bench/README.md. The last line printed is

    jobs_per_s=... p50_ms=... p99_ms=... server_rss_mb=... [more keys]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tools/ is not an installed package

QUEUE = "bench"
SUBMIT_BATCH = 5000
# What every simulated pilot offers; the submitted jobs ask for less.
PILOT_CORES, PILOT_MEMORY_MB, PILOT_WALLTIME_S = 1, 4000, 2 * 86400
JOB_MEMORY_MB, JOB_WALLTIME_S = 1000, 3600


def connection(address: str, token: str):  # type: ignore[no-untyped-def]
    """An aio channel with the project's client options, `token` on every call, and a TCP
    connection of its own: grpc otherwise shares one connection between channels to the same
    address."""
    from panda_runtime.client.channels import aio_channel
    from panda_runtime.client.credentials import StaticToken

    return aio_channel(address, StaticToken(token) if token else None,
                       options=[("grpc.use_local_subchannel_pool", 1)])


def blocking_channel(address: str, token: str):  # type: ignore[no-untyped-def]
    from panda_runtime.client.channels import sync_channel
    from panda_runtime.client.credentials import StaticToken

    return sync_channel(address, StaticToken(token) if token else None)


def now() -> float:
    # CLOCK_MONOTONIC is system-wide on Linux: comparable between the client processes.
    return time.monotonic()


# ---------------------------------------------------------------------------------------
# Client side: simulated pilots (run in worker processes started with "spawn")
# ---------------------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    index: int
    address: str
    pilot_ids: list[str]
    channels: int
    mode: str  # protocol | process
    wait_ack: bool
    payload: list[str]
    slots: int = 1
    # Protocol mode: how long a job "runs" between RUNNING and FINISHED (0: not at all).
    hold_seconds: float = 0.0
    # The pilots' bearer token (empty when the server runs without checks).
    token: str = ""


@dataclass
class WorkerShared:
    """Counters a worker writes and the main process reads (one writer each, no lock)."""

    finished: mp.sharedctypes.Synchronized  # type: ignore[name-defined]
    assigned: mp.sharedctypes.Synchronized  # type: ignore[name-defined]
    last_ack: mp.sharedctypes.Synchronized  # type: ignore[name-defined]
    ready: mp.synchronize.Event  # type: ignore[name-defined]


class PilotError(RuntimeError):
    pass


async def _pilot(
    stub, config: WorkerConfig, pilot_id: str, shared: WorkerShared, latencies: list[float],
    stopping: asyncio.Event, calls: dict[str, object],
) -> None:
    import grpc

    from panda.common.v1 import resources_pb2
    from panda.server.v1 import dispatch_service_pb2 as d
    from panda.server.v1 import job_pb2

    running, finished = job_pb2.Job.STATE_RUNNING, job_pb2.Job.STATE_FINISHED
    call = stub.Connect()
    calls[pilot_id] = call
    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq += 1
        return seq

    async def read():
        message = await call.read()
        if message is grpc.aio.EOF:
            if stopping.is_set():
                return None
            raise PilotError(f"pilot {pilot_id}: the server ended the stream")
        return message

    def on_ack(ack) -> None:
        if ack.status.code != 0 or ack.state != finished:
            raise PilotError(
                f"pilot {pilot_id}: update of job {ack.job_id} refused: code {ack.status.code} "
                f"{ack.status.message!r}, state {ack.state}"
            )
        shared.finished.value += 1
        shared.last_ack.value = now()

    await call.write(d.ConnectRequest(seq=next_seq(), hello=d.Hello(
        pilot_id=pilot_id, queue=QUEUE, node=f"bench-node-{config.index}", version="bench",
        resources=resources_pb2.Resources(cores=PILOT_CORES, memory_mb=PILOT_MEMORY_MB,
                                          walltime_seconds=PILOT_WALLTIME_S),
    )))
    first = await read()
    if first is None or first.WhichOneof("message") != "welcome":
        raise PilotError(f"pilot {pilot_id}: expected a welcome, got {first}")
    request = d.ConnectRequest(request_jobs=d.RequestJobs(count=config.slots))

    def updates(jobs, state: int, exit_code: int = 0, then_request=None):  # type: ignore[no-untyped-def]
        # One JobUpdates for every job the pilot reports at once (one, or several with slots),
        # with the next request when given.
        return d.ConnectRequest(seq=next_seq(), job_updates=d.JobUpdates(updates=[
            d.JobUpdate(job_id=j.job_id, attempt=j.attempt, state=state, exit_code=exit_code) for j in jobs],
            request_jobs=then_request))

    def on_message_acks(message) -> list[int]:  # type: ignore[no-untyped-def]
        kind = message.WhichOneof("message")
        acks = (list(message.update_acks.acks) if kind == "update_acks" else
                list(message.job_assignments.acks) if kind == "job_assignments" else [])
        for ack in acks:
            on_ack(ack)
        return [ack.seq for ack in acks]

    # As the pilot agent does: the final update carries the next request, unless the pilot
    # waits for the final's acknowledgement before asking (--wait-ack).
    request.seq = next_seq()
    asked = now()
    await call.write(request)
    while not stopping.is_set():
        while True:
            message = await read()
            if message is None:
                return
            on_message_acks(message)
            if message.WhichOneof("message") == "job_assignments":
                break
            # commands: none expected in the benchmark; ignored
        latencies.append(now() - asked)
        jobs = list(message.job_assignments.jobs)
        if not 1 <= len(jobs) <= config.slots:
            raise PilotError(f"pilot {pilot_id}: asked for {config.slots} job(s), got {len(jobs)}")
        shared.assigned.value += len(jobs)
        await call.write(updates(jobs, running))
        exit_code = 0
        if config.hold_seconds:
            await asyncio.sleep(config.hold_seconds)
        if config.mode == "process":
            processes = [
                await asyncio.create_subprocess_exec(
                    *config.payload, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                for _ in jobs
            ]
            for process in processes:
                exit_code = await process.wait()
                if exit_code != 0:
                    raise PilotError(f"pilot {pilot_id}: payload {config.payload} exited with {exit_code}")
        if not config.wait_ack:
            asked = now()
            await call.write(updates(jobs, finished, exit_code, then_request=request.request_jobs))
            continue
        final = updates(jobs, finished, exit_code)
        await call.write(final)
        while True:
            message = await read()
            if message is None:
                return
            if final.seq in on_message_acks(message):
                break
        request.seq = next_seq()
        asked = now()
        await call.write(request)


async def _worker_async(config: WorkerConfig, shared: WorkerShared, go, stop, errors) -> list[float]:
    from panda.server.v1 import dispatch_service_pb2 as d
    from panda.server.v1 import dispatch_service_pb2_grpc

    channels = [connection(config.address, config.token) for _ in range(config.channels)]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), 30)
        stubs = [dispatch_service_pb2_grpc.DispatchServiceStub(c) for c in channels]
        shared.ready.set()
        await asyncio.to_thread(go.wait)
        latencies: list[float] = []
        stopping = asyncio.Event()
        calls: dict[str, object] = {}
        tasks = [
            asyncio.create_task(_pilot(stubs[i % len(stubs)], config, pilot_id, shared, latencies, stopping, calls))
            for i, pilot_id in enumerate(config.pilot_ids)
        ]
        stopper = asyncio.create_task(asyncio.to_thread(stop.wait))
        pending = set(tasks)
        # Watch for failures while the run goes on; any pilot error ends the benchmark.
        while not stopper.done():
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopper)
            for task in done:
                if task is not stopper and task.exception() is not None:
                    error = task.exception()
                    errors.put(f"worker {config.index}: {type(error).__name__}: {error}")
                    stop.set()
        stopping.set()
        # Leave politely: Goodbye, then end our side; the server then ends the stream.
        goodbye = d.ConnectRequest(goodbye=d.Goodbye(reason="benchmark done"))
        for call in calls.values():
            with contextlib.suppress(Exception):
                await call.write(goodbye)
                await call.done_writing()
        _, still = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
        for task in still:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return latencies
    finally:
        for channel in channels:
            await channel.close()


def worker_main(config: WorkerConfig, shared: WorkerShared, go, stop, errors, results) -> None:
    """Entry point of a client process."""
    from panda_runtime.service.bootstrap import tune_garbage_collector

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process cleans up on Ctrl-C
    tune_garbage_collector()  # as every service process does
    try:
        latencies = asyncio.run(_worker_async(config, shared, go, stop, errors))
        results.put((config.index, latencies))
    except BaseException as error:  # report, never hang the main process
        errors.put(f"worker {config.index} crashed: {type(error).__name__}: {error}\n{traceback.format_exc()}")
        results.put((config.index, None))


class PythonPilots:
    """The simulated pilots above, spread over spawned client processes."""

    def __init__(self, configs: list[WorkerConfig]) -> None:
        ctx = mp.get_context("spawn")  # no fork: grpc and threads live in this process
        self._go, self._stop, self._errors, self._results = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
        self._shares: list[WorkerShared] = []
        self._processes: list[mp.Process] = []
        for config in configs:
            share = WorkerShared(
                finished=ctx.Value("q", 0, lock=False), assigned=ctx.Value("q", 0, lock=False),
                last_ack=ctx.Value("d", 0.0, lock=False), ready=ctx.Event(),
            )
            process = ctx.Process(target=worker_main,
                                  args=(config, share, self._go, self._stop, self._errors, self._results),
                                  name=f"bench-client-{config.index}", daemon=True)
            process.start()
            self._processes.append(process)
            self._shares.append(share)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def wait_ready(self, timeout: float) -> None:
        deadline = now() + timeout
        for share, process in zip(self._shares, self._processes, strict=True):
            while not share.ready.wait(0.2):
                if not process.is_alive() or now() > deadline:
                    raise RuntimeError(f"client process {process.name} did not get ready: {drain(self._errors)}")

    def go(self) -> None:
        self._go.set()

    def progress(self) -> tuple[int, int, float]:
        """Finished acks, jobs assigned, time of the last ack."""
        return (sum(s.finished.value for s in self._shares), sum(s.assigned.value for s in self._shares),
                max(s.last_ack.value for s in self._shares))

    def check(self) -> None:
        error = drain(self._errors)
        if error:
            raise RuntimeError(f"a pilot failed: {error}")
        for process in self._processes:
            if not process.is_alive():
                raise RuntimeError(f"client process {process.name} exited early ({process.exitcode})")

    def stop(self) -> list[float]:
        """The pilots leave; their latencies."""
        self._stop.set()
        latencies: list[float] = []
        for _ in self._processes:
            index, values = self._results.get(timeout=60)
            if values is None:
                raise RuntimeError(f"client process {index} failed: {drain(self._errors)}")
            latencies.extend(values)
        for process in self._processes:
            process.join(10)
        return latencies

    def close(self) -> None:
        self._stop.set()
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.terminate()  # our own child, by its handle
                process.join(5)


class NativePilots:
    """The C++ simulated pilots (bench/pilots/bench_pilots.cc): the same protocol in one
    process, a thread per pilot, so that the load generator takes little of the two cores
    the server, PostgreSQL and the pilots share. It reports on stdout; see its header."""

    def __init__(self, binary: Path, config: WorkerConfig, work_dir: Path) -> None:
        self._latencies_path = work_dir / "latencies.txt"
        args = [str(binary), "--address", config.address, "--latencies", str(self._latencies_path),
                "--queue", QUEUE, "--node", "bench-node-0", "--pilot-ids", ",".join(config.pilot_ids),
                "--channels", str(config.channels), "--mode", config.mode, "--payload", config.payload[0],
                "--slots", str(config.slots), "--hold-seconds", str(config.hold_seconds),
                "--cores", str(PILOT_CORES), "--memory-mb", str(PILOT_MEMORY_MB),
                "--walltime-seconds", str(PILOT_WALLTIME_S)]
        if config.wait_ack:
            args.append("--wait-ack")
        env = {**os.environ, "BENCH_PILOT_TOKEN": config.token}  # not on the command line, seen by ps
        self._log_path = work_dir / "bench_pilots.log"  # grpc's own messages
        with open(self._log_path, "wb") as log_file:
            self._process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log_file,
                                             text=True, env=env, start_new_session=True)
        self._ready, self._done = threading.Event(), threading.Event()
        self._progress: tuple[int, int, float] = (0, 0, 0.0)
        self._errors: list[str] = []
        self._reader = threading.Thread(target=self._read, name="bench-pilots-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "progress":
                finished, assigned, last_ack = rest.split()
                self._progress = (int(finished), int(assigned), float(last_ack))
            elif kind == "ready":
                self._ready.set()
            elif kind == "done":
                self._done.set()
            elif kind == "error":
                self._errors.append(rest)

    @property
    def pids(self) -> list[int]:
        return [self._process.pid]

    def _send(self, line: str) -> None:
        assert self._process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()

    def _stderr(self) -> str:
        return self._log_path.read_text(errors="replace")[-2000:] if self._log_path.exists() else ""

    def wait_ready(self, timeout: float) -> None:
        deadline = now() + timeout
        while not self._ready.wait(0.2):
            if self._errors or self._process.poll() is not None or now() > deadline:
                raise RuntimeError(f"the C++ pilots did not get ready: {'; '.join(self._errors)} {self._stderr()}")

    def go(self) -> None:
        self._send("go")

    def progress(self) -> tuple[int, int, float]:
        return self._progress

    def check(self) -> None:
        if self._errors:
            raise RuntimeError(f"a pilot failed: {'; '.join(self._errors[:5])}")
        if self._process.poll() is not None:
            raise RuntimeError(f"the C++ pilots exited early ({self._process.returncode}): {self._stderr()}")

    def stop(self) -> list[float]:
        self._send("stop")
        if not self._done.wait(60) or self._process.wait(10) != 0:
            raise RuntimeError(f"the C++ pilots failed to stop cleanly: {'; '.join(self._errors)} {self._stderr()}")
        return [float(line.split()[1]) for line in self._latencies_path.read_text().splitlines()]

    def close(self) -> None:
        if self._process.poll() is None:
            self._send("stop")
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)  # the group we created
                self._process.wait(5)


# ---------------------------------------------------------------------------------------
# Server-side measurements
# ---------------------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Samples one process's resident memory and CPU every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        import psutil

        self._process = psutil.Process(pid)
        self._interval = interval
        self._halt = threading.Event()
        self.current = 0
        self.peak = 0
        self.window_peak = 0  # peak since the last reset_window()
        self._process.cpu_percent(None)
        self.sample()

    def sample(self) -> None:
        try:
            rss = self._process.memory_info().rss
        except Exception:
            return
        self.current = rss
        self.peak = max(self.peak, rss)
        self.window_peak = max(self.window_peak, rss)

    def reset_window(self) -> None:
        self.window_peak = self.current

    def cpu_seconds(self) -> float:
        try:
            times = self._process.cpu_times()
            return times.user + times.system
        except Exception:
            return 0.0

    def cpu_percent(self) -> float:
        try:
            return self._process.cpu_percent(None)
        except Exception:
            return 0.0

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()


def code_revision(pythonpath: str = "") -> str:
    """Which server code runs: the git revision of the tree the server imports, and what is
    uncommitted in it (the server runs from the working tree, which others edit)."""
    trees = [Path(p) for p in pythonpath.split(os.pathsep) if p and (Path(p) / "server_svc").is_dir()]
    root = trees[0] if trees else REPO_ROOT
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "server_svc", "panda_runtime", "alembic"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return f"{root} (not a git checkout)"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" + uncommitted: {', '.join(changed)}" if changed else " (clean)")


def mb(value: int | float) -> float:
    return value / (1024 * 1024)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# ---------------------------------------------------------------------------------------
# Phases run by the main process
# ---------------------------------------------------------------------------------------


def create_queue(address: str, token: str) -> None:
    from panda.server.v1 import queue_pb2, queue_service_pb2, queue_service_pb2_grpc

    with blocking_channel(address, token) as channel:
        queue_service_pb2_grpc.QueueServiceStub(channel).CreateQueue(
            queue_service_pb2.CreateQueueRequest(
                queue=queue_pb2.Queue(queue_id=QUEUE, status=queue_pb2.Queue.STATUS_ONLINE,
                                      description="dispatch benchmark")
            ),
            timeout=30,
        )


def submit_jobs(address: str, count: int, token: str) -> float:
    """Submit `count` jobs in batches; returns the seconds it took."""
    from panda.common.v1 import resources_pb2
    from panda.server.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    template = job_pb2.Job(
        queue=QUEUE, command=["/bin/true"], max_attempts=1, label="bench",
        resources=resources_pb2.Resources(cores=1, memory_mb=JOB_MEMORY_MB, walltime_seconds=JOB_WALLTIME_S),
    )
    with blocking_channel(address, token) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        started = now()
        submitted = 0
        while submitted < count:
            size = min(SUBMIT_BATCH, count - submitted)
            batch_started = now()
            reply = stub.SubmitJobs(
                job_service_pb2.SubmitJobsRequest(jobs=[template] * size, request_id=f"bench-{submitted}"),
                timeout=300,
            )
            if len(reply.jobs) != size:
                raise RuntimeError(f"submitted {size} jobs, the server returned {len(reply.jobs)}")
            submitted += size
            print(f"  submitted {submitted}/{count} (batch of {size} in {now() - batch_started:.2f} s)", flush=True)
        return now() - started


def count_finished(address: str, token: str) -> tuple[int, int]:
    """(jobs finished, all jobs) according to ListJobs."""
    from panda.server.v1 import job_service_pb2, job_service_pb2_grpc

    with blocking_channel(address, token) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        finished = stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1, filter="state = FINISHED"),
                                 timeout=120).total_size
        total = stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1), timeout=120).total_size
    return finished, total


async def hold_idle_streams(address: str, token: str, count: int, per_channel: int, sampler: RssSampler,
                            settle: float, timeout: float) -> dict[str, float]:
    """Open `count` pilot streams (Hello only), wait for every Welcome, let the server settle,
    and measure its memory with them held."""
    import grpc

    from panda.common.v1 import resources_pb2
    from panda.server.v1 import dispatch_service_pb2 as d
    from panda.server.v1 import dispatch_service_pb2_grpc

    channels = [connection(address, token) for _ in range(max(1, math.ceil(count / per_channel)))]
    calls = []
    try:
        stubs = [dispatch_service_pb2_grpc.DispatchServiceStub(c) for c in channels]
        sampler.sample()
        baseline = sampler.current
        started = now()

        async def open_one(i: int) -> None:
            call = stubs[i % len(stubs)].Connect()
            calls.append(call)
            await call.write(d.ConnectRequest(seq=1, hello=d.Hello(
                pilot_id=f"idle-{i}", queue=QUEUE, node=f"idle-node-{i % 50}", version="bench",
                resources=resources_pb2.Resources(cores=PILOT_CORES, memory_mb=PILOT_MEMORY_MB,
                                                  walltime_seconds=PILOT_WALLTIME_S),
            )))
            welcome = await call.read()
            if welcome is grpc.aio.EOF or welcome.WhichOneof("message") != "welcome":
                raise PilotError(f"idle stream {i}: expected a welcome, got {welcome}")

        await asyncio.wait_for(asyncio.gather(*(open_one(i) for i in range(count))), timeout)
        connected = now() - started
        sampler.reset_window()
        await asyncio.sleep(settle)
        sampler.sample()
        held = sampler.current
        return {"baseline": mb(baseline), "held": mb(held), "peak": mb(sampler.window_peak),
                "connect_s": connected}
    finally:
        for call in calls:
            call.cancel()
        for channel in channels:
            await channel.close()


def scrape_metrics(metrics_port: int) -> dict[str, float]:
    """Sums of the server's own Prometheus series that explain a run (best effort)."""
    import urllib.request

    wanted = ("panda_pilot_update_batch_size_count", "panda_pilot_update_batch_size_sum",
              "panda_dispatch_latency_seconds_count", "panda_dispatch_latency_seconds_sum")
    values: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as reply:
            for line in reply.read().decode().splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name in wanted:
                    values[name] = values.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    except Exception as error:  # diagnostics only
        print(f"  (could not read the server's metrics: {error})")
    return values


def start_profiler(pid: int, path: str, duration: int, gil: bool) -> subprocess.Popen:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--output", path, "--rate", "100",
            "--duration", str(duration), "--nonblocking"]
    if gil:
        args.append("--gil")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def stop_profiler(profiler: subprocess.Popen | None) -> None:
    if profiler is None:
        return
    if profiler.poll() is None:
        profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait(5)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--mode", choices=["protocol", "process"], default="protocol",
                        help="protocol: report RUNNING then FINISHED at once; process: run the payload "
                             "(/bin/true) as a real subprocess in between")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--pilots", type=int, default=100)
    parser.add_argument("--client", choices=["cxx", "python"], default="cxx",
                        help="cxx: the simulated pilots in C++, one process, a thread per pilot (built on first "
                             "use, bench/pilots/); python: grpc.aio pilots spread over --client-procs processes")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="--client python: client processes the pilots are spread over (default 2: on 2 "
                             "cores as good as 1 in protocol mode, better in process mode; see bench/README.md)")
    parser.add_argument("--channels", type=int, default=4,
                        help="gRPC channels in all, each its own TCP connection, spread over the client processes")
    parser.add_argument("--overlap", action="store_true",
                        help="start the pilots (connected and asking) before the first submit, so dispatch "
                             "overlaps submission (default: submit everything, then start the pilots)")
    parser.add_argument("--slots", type=int, default=1,
                        help="jobs each pilot takes at a time (a multi-slot pilot; its updates go in one "
                             "JobUpdates message); 1 = one job at a time")
    parser.add_argument("--hold-ms", type=float, default=0.0,
                        help="protocol mode: each job 'runs' this long between RUNNING and FINISHED, so the "
                             "pilots offer less than the server can take and the latency is measured below "
                             "saturation (default 0: a closed loop at full speed)")
    parser.add_argument("--wait-ack", action="store_true",
                        help="ask for the next job only once the FINISHED update is acknowledged "
                             "(default: right after sending it)")
    parser.add_argument("--idle-streams", type=int, default=1000, help="0 skips the idle-stream phase")
    parser.add_argument("--idle-per-channel", type=int, default=100)
    parser.add_argument("--idle-settle", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds the dispatch phase may take before the benchmark fails")
    parser.add_argument("--db-name", default="panda_bench", help="PostgreSQL database (dropped and recreated)")
    parser.add_argument("--drop-index", action="append", default=[], metavar="NAME",
                        help="drop this index of the fresh database before the server starts (repeatable): what "
                             "an index costs the dispatch")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the server, e.g. PANDA_DISPATCH_POLL_SECONDS=0.5")
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy record the server during the dispatch phase (raw/collapsed output)")
    parser.add_argument("--profile-gil", action="store_true", help="with --profile: only samples holding the GIL")
    parser.add_argument("--auth", choices=["token", "none"], default="token",
                        help="token: every call carries a token the server checks (the default); none: no checks")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (server log) afterwards")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.pilots < 1 or args.client_procs < 1 or args.channels < 1:
        parser.error("--jobs, --pilots, --client-procs and --channels must be positive")
    args.client_procs = min(args.client_procs, args.pilots)
    args.channels = max(args.channels, args.client_procs)
    return args


class Interrupted(Exception):
    pass


def _on_sigterm(signum, frame):  # type: ignore[no-untyped-def]
    raise Interrupted(f"signal {signum}")


def run(args: argparse.Namespace) -> int:
    import psutil

    from panda_runtime.client.credentials import ClientCredentialsToken
    from tools.cluster import fresh_database, start_iam, start_server

    data_dir = Path(tempfile.mkdtemp(prefix="panda-bench-"))
    server = None
    identity = None
    sampler: RssSampler | None = None
    profiler = None
    fleet: PythonPilots | NativePilots | None = None
    ok = False
    try:
        binary = None
        if args.client == "cxx":
            from bench.pilots.build import build

            binary = build()
        clients = "cxx (1 process)" if args.client == "cxx" else f"python ({args.client_procs} processes)"
        print(f"dispatch benchmark: db={args.db} mode={args.mode} jobs={args.jobs} pilots={args.pilots} "
              f"clients={clients} channels={args.channels} wait_ack={args.wait_ack} "
              f"hold_ms={args.hold_ms:g} "
              f"(data in {data_dir})", flush=True)
        extra_env = dict(item.split("=", 1) for item in args.server_env)
        print(f"server code: {code_revision(extra_env.get('PYTHONPATH', ''))}", flush=True)
        url = fresh_database(args.db, data_dir, args.db_name)
        drop_indexes(url, args.drop_index)
        admin_token = pilot_token = ""
        if args.auth == "token":
            identity = start_iam(data_dir / "iam")
            extra_env = {**identity.trust_env(), **extra_env}
            admin_token = identity.token("admin")
            pilot = ClientCredentialsToken(identity.issuer, "panda-pilot", identity.secrets["panda-pilot"])
            pilot_token = pilot.token()
        else:
            extra_env = {"PANDA_AUTH_MODE": "none", **extra_env}
        print(f"auth: {args.auth}", flush=True)
        server = start_server(data_dir, url, extra_env)
        print(f"server pid {server.process.pid} on {server.address}", flush=True)
        sampler = RssSampler(server.process.pid)
        sampler.start()
        create_queue(server.address, admin_token)

        # Simulated pilots: started and connected before the clock starts.
        pilot_ids = [f"bench-pilot-{i}" for i in range(args.pilots)]
        procs = 1 if binary is not None else args.client_procs
        configs = [
            WorkerConfig(
                index=k, address=server.address, pilot_ids=pilot_ids[k::procs],
                channels=args.channels // procs + (1 if k < args.channels % procs else 0),
                mode=args.mode, wait_ack=args.wait_ack, payload=["/bin/true"], slots=args.slots,
                hold_seconds=args.hold_ms / 1000, token=pilot_token,
            )
            for k in range(procs)
        ]
        fleet = NativePilots(binary, configs[0], data_dir) if binary is not None else PythonPilots(configs)
        fleet.wait_ready(60)
        client_procs = [psutil.Process(pid) for pid in fleet.pids]
        for p in client_procs:
            p.cpu_percent(None)

        def start_pilots() -> float:
            nonlocal profiler
            if args.profile:
                profiler = start_profiler(server.process.pid, args.profile, int(args.timeout) + 60,
                                          args.profile_gil)
            sampler.cpu_percent()
            psutil.cpu_percent(None)
            started = now()
            fleet.go()
            return started

        server_cpu_start = sampler.cpu_seconds()
        client_cpu_start = sum(sum(p.cpu_times()[:2]) for p in client_procs)
        if args.overlap:
            t_go = start_pilots()
            time.sleep(0.5)  # let them connect and ask before the first job exists
        # Submit.
        print(f"submitting {args.jobs} jobs in batches of up to {SUBMIT_BATCH}", flush=True)
        t_submit = now()
        submit_s = submit_jobs(server.address, args.jobs, admin_token)
        submit_rate = args.jobs / submit_s
        print(f"submit: {args.jobs} jobs in {submit_s:.2f} s = {submit_rate:.0f} jobs/s", flush=True)

        # Dispatch.
        if not args.overlap:
            t_go = start_pilots()
        last_print, last_done = t_go, 0
        while True:
            time.sleep(0.1)
            done, assigned, _ = fleet.progress()
            if done >= args.jobs:
                break
            fleet.check()
            if not server.process.alive():
                raise RuntimeError(f"the server died:\n{server.process.log()[-3000:]}")
            t = now()
            if t - t_go > args.timeout:
                raise RuntimeError(f"timeout: {done}/{args.jobs} finished after {args.timeout:.0f} s")
            if t - last_print >= 1.0:
                client_cpu = sum(p.cpu_percent(None) for p in client_procs)
                print(f"  [{t - t_go:6.1f}s] finished {done}/{args.jobs} assigned {assigned}  "
                      f"rate {(done - last_done) / (t - last_print):7.0f}/s (avg {done / (t - t_go):5.0f}/s)  "
                      f"server rss {mb(sampler.current):6.1f} MB cpu {sampler.cpu_percent():4.0f}%  "
                      f"client cpu {client_cpu:4.0f}%  machine cpu {psutil.cpu_percent(None):3.0f}%", flush=True)
                last_print, last_done = t, done
        t_end = fleet.progress()[2]
        server_cpu_ms = 1000 * (sampler.cpu_seconds() - server_cpu_start) / args.jobs
        client_cpu_ms = 1000 * (sum(sum(p.cpu_times()[:2]) for p in client_procs) - client_cpu_start) / args.jobs
        stop_profiler(profiler)
        profiler = None
        run_peak = sampler.peak
        metrics = scrape_metrics(server.metrics_port)

        # Pilots leave; collect their latencies.
        latencies = fleet.stop()

        finished, total = count_finished(server.address, admin_token)
        if finished != args.jobs or total != args.jobs:
            raise RuntimeError(f"ListJobs says {finished} of {total} jobs finished; expected all {args.jobs}")
        print(f"verified: ListJobs(state = FINISHED).total_size = {finished} of {total}", flush=True)

        idle = None
        if args.idle_streams > 0:
            print(f"opening {args.idle_streams} idle streams", flush=True)
            idle = asyncio.run(hold_idle_streams(server.address, pilot_token, args.idle_streams, args.idle_per_channel,
                                                 sampler, args.idle_settle, timeout=120))

        latencies.sort()
        e2e_s, dispatch_s = t_end - t_submit, t_end - t_go
        e2e_rate, dispatch_rate = args.jobs / e2e_s, args.jobs / dispatch_s
        p50, p90, p99 = (percentile(latencies, q) * 1000 for q in (0.5, 0.9, 0.99))
        print("results:")
        print(f"  submit          {args.jobs} jobs in {submit_s:.2f} s = {submit_rate:.0f} jobs/s")
        print(f"  dispatch phase  {dispatch_s:.2f} s = {dispatch_rate:.0f} jobs/s "
              f"(pilots start -> last FINISHED ack)")
        print(f"  end to end      {e2e_s:.2f} s = {e2e_rate:.0f} jobs/s (first submit -> last FINISHED ack)")
        print(f"  dispatch latency ({len(latencies)} samples) p50 {p50:.1f} ms  p90 {p90:.1f} ms  "
              f"p99 {p99:.1f} ms  max {latencies[-1] * 1000:.1f} ms")
        print(f"  server peak RSS {mb(run_peak):.1f} MB (submit + dispatch)")
        print(f"  CPU per job     server {server_cpu_ms:.2f} ms, simulated pilots {client_cpu_ms:.2f} ms "
              f"(submit + dispatch; payload processes not counted)")
        batches = metrics.get("panda_pilot_update_batch_size_count", 0)
        if batches:
            latency_sum = metrics.get("panda_dispatch_latency_seconds_sum", 0.0)
            latency_count = max(1.0, metrics.get("panda_dispatch_latency_seconds_count", 0.0))
            print(f"  server metrics  {batches:.0f} update transactions, "
                  f"{metrics['panda_pilot_update_batch_size_sum'] / batches:.1f} updates each on average; "
                  f"server-side dispatch latency mean {1000 * latency_sum / latency_count:.1f} ms")
        if idle is not None:
            print(f"  idle streams    {args.idle_streams} connected in {idle['connect_s']:.2f} s; server RSS "
                  f"{idle['baseline']:.1f} MB before, {idle['held']:.1f} MB held "
                  f"(+{(idle['held'] - idle['baseline']) * 1024 / args.idle_streams:.0f} KB/stream), "
                  f"peak {idle['peak']:.1f} MB")
            print(f"idle_streams={args.idle_streams} idle_rss_mb={idle['held']:.1f}")
        extra = f" idle_rss_mb={idle['held']:.1f}" if idle is not None else ""
        print(f"jobs_per_s={e2e_rate:.1f} p50_ms={p50:.1f} p99_ms={p99:.1f} server_rss_mb={mb(run_peak):.1f} "
              f"dispatch_jobs_per_s={dispatch_rate:.1f} submit_jobs_per_s={submit_rate:.1f}{extra}", flush=True)
        ok = True
        return 0
    finally:
        stop_profiler(profiler)
        if fleet is not None:
            fleet.close()
        if sampler is not None:
            sampler.stop()
        if server is not None:
            server.stop()
            if not ok:
                print(f"server log tail ({data_dir / 'logs' / 'server.log'}):\n{server.process.log()[-2000:]}",
                      file=sys.stderr)
        if identity is not None:
            identity.stop()
        if ok and not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def drain(q) -> str:  # type: ignore[no-untyped-def]
    messages = []
    with contextlib.suppress(Exception):
        while True:
            messages.append(q.get_nowait())
    return "\n".join(messages)


def drop_indexes(url: str, names: list[str]) -> None:
    """Drop these indexes (by name) of a fresh database, to measure the dispatch without them."""
    if not names:
        return
    from sqlalchemy import text

    from panda_runtime.service.db import make_engine

    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(text(f'DROP INDEX "{name}"'))
    finally:
        engine.dispose()
    print(f"dropped indexes: {', '.join(names)}", flush=True)


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        return run(args)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted; server stopped", file=sys.stderr)
        return 130
    except Exception as error:
        print(f"BENCHMARK FAILED: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
