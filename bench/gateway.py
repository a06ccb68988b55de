"""What the HTTP/JSON gateway adds to a call, side by side with the same gRPC call alone.

One identity service, one server (SQLite or PostgreSQL) with `--jobs` jobs, one gateway, every
one a real process on loopback. Then, in rounds, each call both ways, one right after the other
(so drift hits both alike):

1. `GetJob` of a random job: over gRPC (one channel, one call at a time) and through the gateway
   (one keep-alive HTTP connection, one request at a time), in pairs: each gRPC call right
   before the same call through the gateway; p50 and p99 of each way, in ms. The HTTP
   client is the standard library's `http.client`, the lightest there is in Python, as grpcio's
   client is mostly C: httpx, measured the same way, cost about 1 ms more of its own for a page of
   100 jobs, which is the client's time, not the gateway's.
2. `ListJobs` with 100 jobs a page: the same two ways.
3. Throughput: `GetJob` through the gateway from `wrk` (Debian's package; a C load generator, so
   the client takes little of the two cores) with `--connections` connections for `--seconds`,
   and the same calls over gRPC from a thread pool for comparison.

The last line is the figures the issue asks for:
`gateway_added_p50_ms=… gateway_added_p99_ms=… gateway_getjob_per_s=…`.

    python bench/gateway.py [--db sqlite|postgresql] [--jobs 2000] [--calls 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

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
from tools.cluster import drop_database, fresh_database, start_gateway, start_iam, start_server


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3


def _paired(calls: int, direct: Callable[[int], object], through: Callable[[int], object],
            job_ids: list[int]) -> tuple[list[float], list[float]]:
    """`calls` pairs of the same call, over gRPC and then through the gateway, one right after the
    other: whatever the machine does meanwhile hits both ways of a pair alike."""
    direct_samples, through_samples = [], []
    for _ in range(calls):
        job_id = random.choice(job_ids)
        started = time.perf_counter()
        cpu_started = time.thread_time()
        direct(job_id)
        between = time.perf_counter()
        cpu_between = time.thread_time()
        through(job_id)
        direct_samples.append(between - started)
        through_samples.append(time.perf_counter() - between)
        _CLIENT_CPU[0] += cpu_between - cpu_started
        _CLIENT_CPU[1] += time.thread_time() - cpu_between
    return direct_samples, through_samples


# The client's own CPU, gRPC way and HTTP way: what each client spends is in its way's latency.
_CLIENT_CPU = [0.0, 0.0]


def _http_get(connection: http.client.HTTPConnection, path: str, token: str) -> bytes:
    """The body of a GET on a kept-alive connection; anything but 200 ends the run."""
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
    return body


def _setup(server_address: str, token: str, jobs: int, se_dir: Path) -> list[int]:
    with sync_channel(server_address, StaticToken(token)) as channel:
        se_dir.mkdir(parents=True, exist_ok=True)
        storage_service_pb2_grpc.StorageServiceStub(channel).CreateStorageElement(
            storage_service_pb2.CreateStorageElementRequest(storage_element=storage_element_pb2.StorageElement(
                storage_element_id="bench", url=se_dir.as_uri())), timeout=10)
        queue_service_pb2_grpc.QueueServiceStub(channel).CreateQueue(queue_service_pb2.CreateQueueRequest(
            queue=queue_pb2.Queue(queue_id="bench", status=queue_pb2.Queue.STATUS_ONLINE,
                                  storage_element="bench")), timeout=10)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        ids: list[int] = []
        while len(ids) < jobs:
            batch = [job_pb2.Job(queue="bench", command=["/bin/true"], environment={"STEP": "bench"})
                     for _ in range(min(1000, jobs - len(ids)))]
            ids += [job.job_id for job in stub.SubmitJobs(job_service_pb2.SubmitJobsRequest(jobs=batch),
                                                          timeout=60).jobs]
        return ids


def _wrk(url: str, token: str, job_ids: list[int], connections: int, seconds: int, work: Path) -> float:
    """Requests per second wrk measured (only 200 answers counted: a non-2xx fails the run)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    script = work / "getjob.lua"
    script.write_text(
        f'local ids = {{{",".join(str(i) for i in job_ids[:1000])}}}\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "request = function() return wrk.format('GET', '/v1/jobs/' .. ids[math.random(#ids)]) end\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('JSON {\"requests\": %d, \"non2xx\": %d, \"seconds\": %f}\\n',\n"
        "    summary.requests, summary.errors.status, summary.duration / 1e6))\n"
        "end\n")
    result = subprocess.run([wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", str(script), url],
                            capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("JSON "))
    figures = json.loads(line[5:])
    if figures["non2xx"]:
        raise SystemExit(f"wrk saw {figures['non2xx']} answers that were not 2xx:\n{result.stdout}")
    return float(figures["requests"] / figures["seconds"])


def _grpc_throughput(address: str, token: str, job_ids: list[int], threads: int, seconds: float) -> float:
    with sync_channel(address, StaticToken(token)) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        deadline = time.monotonic() + seconds

        def worker() -> int:
            count = 0
            while time.monotonic() < deadline:
                stub.GetJob(job_service_pb2.GetJobRequest(job_id=random.choice(job_ids)), timeout=10)
                count += 1
            return count

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(lambda _: worker(), range(threads)))
        return total / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs in the database")
    parser.add_argument("--calls", type=int, default=2000, help="calls per way per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--seconds", type=int, default=10, help="each throughput run")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="panda-bench-gateway-"))
    started: list = []  # type: ignore[type-arg]
    database = ""
    try:
        identity = start_iam(work / "iam")
        started.append(identity)
        database = fresh_database(args.db, work, "panda_bench")
        server = start_server(work / "server", database, {**identity.trust_env(), "PANDA_METRICS_PORT": "0"})
        started.append(server)
        gateway = start_gateway(work / "gateway", server_address=server.address, iam_address=identity.address)
        started.append(gateway)
        token = identity.token("admin")
        job_ids = _setup(server.address, token, args.jobs, work / "se")
        print(f"{args.jobs} jobs on {args.db}; server {server.address}, gateway {gateway.url}", flush=True)

        results: dict[str, list[float]] = {name: [] for name in ("get_grpc", "get_http", "list_grpc", "list_http")}
        gateway_url = urllib.parse.urlsplit(gateway.url)
        connection = http.client.HTTPConnection(gateway_url.hostname or "127.0.0.1", gateway_url.port, timeout=10)
        with sync_channel(server.address, StaticToken(token)) as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            ways: dict[str, Callable[[int], object]] = {
                "get_grpc": lambda i: stub.GetJob(job_service_pb2.GetJobRequest(job_id=i), timeout=10),
                "get_http": lambda i: _http_get(connection, f"/v1/jobs/{i}", token),
                "list_grpc": lambda i: stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=100), timeout=10),
                "list_http": lambda i: _http_get(connection, "/v1/jobs?page_size=100", token),
            }
            for direct, through in (("get_grpc", "get_http"), ("list_grpc", "list_http")):  # warm up
                _paired(200, ways[direct], ways[through], job_ids)
            gateway_process = psutil.Process(gateway.process.pid)
            list_cpu_seconds = 0.0
            list_client_cpu = [0.0, 0.0]
            for round_number in range(args.rounds):
                for direct, through in (("get_grpc", "get_http"), ("list_grpc", "list_http")):
                    calls = args.calls if direct.startswith("get") else max(50, args.calls // 10)
                    cpu_before = sum(gateway_process.cpu_times()[:2])
                    _CLIENT_CPU[:] = [0.0, 0.0]
                    direct_samples, through_samples = _paired(calls, ways[direct], ways[through], job_ids)
                    if direct == "list_grpc":
                        list_cpu_seconds += sum(gateway_process.cpu_times()[:2]) - cpu_before
                        list_client_cpu = [a + b for a, b in zip(list_client_cpu, _CLIENT_CPU, strict=True)]
                    results[direct] += direct_samples
                    results[through] += through_samples
                print(f"round {round_number + 1}/{args.rounds} done", flush=True)

        print(f"{'call':<28} {'p50 ms':>8} {'p99 ms':>8} {'calls':>7}")
        figures = {name: _percentiles(samples) for name, samples in results.items()}
        for name, (p50, p99) in figures.items():
            print(f"{name:<28} {p50:>8.2f} {p99:>8.2f} {len(results[name]):>7}")
        added_p50 = figures["get_http"][0] - figures["get_grpc"][0]
        added_p99 = figures["get_http"][1] - figures["get_grpc"][1]
        list_added_p50 = figures["list_http"][0] - figures["list_grpc"][0]
        list_added_p99 = figures["list_http"][1] - figures["list_grpc"][1]
        print(f"GetJob:   the gateway adds {added_p50:.2f} ms at p50, {added_p99:.2f} ms at p99")
        print(f"ListJobs: the gateway adds {list_added_p50:.2f} ms at p50, {list_added_p99:.2f} ms at p99 "
              f"(100 jobs a page); gateway CPU {list_cpu_seconds / len(results['list_http']) * 1e3:.2f} ms a page")
        pages = len(results["list_http"])
        print(f"ListJobs: the client's own CPU a page: {list_client_cpu[0] / pages * 1e3:.2f} ms over gRPC, "
              f"{list_client_cpu[1] / pages * 1e3:.2f} ms over HTTP")

        processes = {"server": psutil.Process(server.process.pid), "gateway": psutil.Process(gateway.process.pid)}
        before = {name: sum(process.cpu_times()[:2]) for name, process in processes.items()}
        wrk_started = time.monotonic()
        http_rate = _wrk(gateway.url, token, job_ids, args.connections, args.seconds, work)
        handled = http_rate * (time.monotonic() - wrk_started)
        cpu = {name: (sum(process.cpu_times()[:2]) - before[name]) / handled * 1e3
               for name, process in processes.items()}
        print("CPU per GetJob through the gateway: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu.items()))
        grpc_rate = _grpc_throughput(server.address, token, job_ids, args.connections, args.seconds)
        print(f"GetJob/s: {http_rate:,.0f} through the gateway (wrk, {args.connections} connections), "
              f"{grpc_rate:,.0f} over gRPC alone (Python, {args.connections} threads)")
        print(f"gateway_added_p50_ms={added_p50:.2f} gateway_added_p99_ms={added_p99:.2f} "
              f"gateway_getjob_per_s={http_rate:.0f}")
        return 0
    finally:
        for handle in reversed(started):
            handle.stop()
        if database:
            drop_database(database)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
