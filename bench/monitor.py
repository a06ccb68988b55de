"""The web monitor's pages with many jobs in the database, timed as a script sees them.

A fresh database (PostgreSQL unless `--db sqlite`) with `--jobs` jobs (default 100,000) generated
straight into it by `bench/monitor_queries.py`'s generator (a week up to now: 200 queues, 300
owners in 3 VOs, 2,000 tasks, 60% finished, 15% failed with pilot and server codes, the rest in
flight), then an identity service, a server, JEDI and a gateway, every one a real process on
loopback. Then, after a warm-up, `--loads` loads of each page, one request at a time, the pages
taking turns (so the machine's drift hits each alike):

1. `jobs_page`: `/monitor/jobs`, HTML, as an admin (who sees every job), 100 jobs a page: one
   ListJobs and six CountJobs (the attribute summary) over every job;
2. `jobs_filtered`: `/monitor/jobs?state=failed&hours=12`, the same page as BigPanDA's users
   filter it;
3. `errors_page`: `/monitor/errors`, HTML: the failures of the last 12 hours by error code, by
   code and queue, by code and task (three CountJobs).

Each whole HTTP request is timed with the standard library's `http.client` on one kept-alive
connection (the lightest client in Python, as in `bench/gateway.py`). Printed per page: p50 and
p99 in ms, the page's size, and the CPU (user + system, psutil) the gateway, the server and the
database's backends serving this database spent per load. The last line is
`jobs_page_p50_ms=… jobs_page_p99_ms=… errors_page_p50_ms=…`, followed by extra keys.

    python bench/monitor.py                                 # PostgreSQL, 100,000 jobs, 50 loads each
    python bench/monitor.py --jobs 10000 --loads 10         # quick
    python bench/monitor.py --profile prof/                 # and py-spy of gateway and server per page
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.monitor_queries import generate
from panda_runtime.service.db import make_engine
from tests.jedi_support import JediHandle, new_jedi
from tools.cluster import drop_database, fresh_database, start_gateway, start_iam, start_server

# What each timed load asks for: (name, path). The first is the figure the issue sets a target for.
PAGES = (
    ("jobs_page", "/monitor/jobs"),
    ("jobs_filtered", "/monitor/jobs?state=failed&hours=12"),
    ("errors_page", "/monitor/errors"),
)


@dataclass
class PageFigures:
    seconds: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    size: int = 0

    def add_cpu(self, spent: dict[str, float]) -> None:
        for name, value in spent.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + value


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3


def _http_get(connection: http.client.HTTPConnection, path: str, token: str) -> bytes:
    """The body of a GET on a kept-alive connection; anything but 200 ends the run."""
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "text/html"})
    response = connection.getresponse()
    body = response.read()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return body


class CpuMeter:
    """CPU time (user + system) of the gateway, the server and the database's backends that
    serve `database` (PostgreSQL's processes for this database's connections, found by their
    title; a backend that connects during a request is counted from the next one)."""

    def __init__(self, processes: dict[str, int], database: str) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self._database = database
        self._backends: list[psutil.Process] = []

    def refresh(self) -> None:
        if not self._database:
            return
        found = []
        for process in psutil.process_iter(["cmdline"]):
            title = " ".join(process.info["cmdline"] or ())
            if title.startswith("postgres:") and f" {self._database} " in title:
                found.append(process)
        self._backends = found

    def read(self) -> dict[str, float]:
        times = {name: _cpu(process) for name, process in self._processes.items()}
        if self._database:
            times["database"] = sum(_cpu(process) for process in self._backends)
        return times


def _cpu(process: psutil.Process) -> float:
    try:
        user, system = process.cpu_times()[:2]
    except psutil.NoSuchProcess:  # a backend that ended meanwhile
        return 0.0
    return float(user + system)


def _check(connection: http.client.HTTPConnection, token: str, jobs: int) -> dict[str, int]:
    """Each page once as JSON (and the job list as HTML): what it shows must be what the database
    holds."""
    documents = {name: json.loads(_http_get(connection, path + ("&" if "?" in path else "?") + "json=1", token))
                 for name, path in PAGES}
    everything = documents["jobs_page"]
    if int(everything["totalSize"]) != jobs or len(everything["jobs"]) != 100:
        raise SystemExit(f"/monitor/jobs shows {len(everything['jobs'])} jobs of {everything['totalSize']}, "
                         f"not 100 of {jobs}")
    rows = _http_get(connection, PAGES[0][1], token).count(b'<tr data-job="')
    if rows != 100:
        raise SystemExit(f"/monitor/jobs as HTML has {rows} rows of jobs, not 100")
    summary_total = sum(int(group["count"]) for group in everything["summary"]["state"])
    if summary_total != jobs:
        raise SystemExit(f"/monitor/jobs counts {summary_total} jobs by state, not {jobs}")
    failed = documents["jobs_filtered"]
    errors = documents["errors_page"]
    if int(failed["totalSize"]) <= 0 or errors["totalSize"] != failed["totalSize"]:
        raise SystemExit(f"failed in 12 hours: the job list shows {failed['totalSize']}, "
                         f"the errors page {errors['totalSize']}")
    return {"jobs": int(everything["totalSize"]), "failed_12h": int(failed["totalSize"]),
            "error_codes": len(errors["byCode"]), "code_queue_groups": len(errors["byCodeAndQueue"])}


def _profile(pid: int, output: Path, seconds: int) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return subprocess.Popen([py_spy, "record", "-p", str(pid), "-r", "200", "-d", str(seconds), "-f", "raw",
                             "--nonblocking", "-o", str(output)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _profiles(connection: http.client.HTTPConnection, token: str, processes: dict[str, int], directory: Path,
              seconds: int) -> None:
    """Each page loaded again and again for `seconds` while py-spy records the gateway and the server."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, path in PAGES:
        recorders = [_profile(pid, directory / f"{name}.{who}.txt", seconds) for who, pid in processes.items()]
        time.sleep(1.0)  # py-spy attached
        loads = 0
        deadline = time.monotonic() + seconds - 1.5
        while time.monotonic() < deadline:
            _http_get(connection, path, token)
            loads += 1
        for recorder in recorders:
            recorder.wait(timeout=seconds + 30)
        print(f"profiled {name}: {loads} loads -> {directory}/{name}.{{{','.join(processes)}}}.txt", flush=True)


def _load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the database")
    parser.add_argument("--loads", type=int, default=50, help="timed loads of each page")
    parser.add_argument("--warmup", type=int, default=5, help="loads of each page before the clock starts")
    parser.add_argument("--seed", type=int, default=15, help="the generator's seed")
    parser.add_argument("--db-name", default="panda_bench_monitor_pages", help="the PostgreSQL database, made anew")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="afterwards, py-spy the gateway and the server while each page loads (raw stacks)")
    parser.add_argument("--profile-seconds", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="panda-bench-monitor-"))
    started: list[Any] = []
    database = ""
    try:
        database = fresh_database(args.db, work, args.db_name)
        engine = make_engine(database)
        try:
            seconds = generate(engine, args.jobs, args.seed, now=datetime.now(UTC))
        finally:
            engine.dispose()
        print(f"{args.jobs} jobs generated into {args.db} in {seconds:.1f} s", flush=True)

        identity = start_iam(work / "iam")
        started.append(identity)
        server = start_server(work / "server", database, {**identity.trust_env(), "PANDA_METRICS_PORT": "0"})
        started.append(server)
        # JEDI at its own default pace: its agents idle as in production.
        jedi: JediHandle = new_jedi(server, work / "jedi", **identity.robot_env("panda-jedi"),
                                    PANDA_JEDI_INTERVAL_SECONDS="1", PANDA_JEDI_PENDING_RETRY_SECONDS="60")
        jedi.start()
        started.append(jedi)
        gateway = start_gateway(work / "gateway", server_address=server.address, iam_address=identity.address,
                                jedi_address=jedi.address)
        started.append(gateway)
        assert server.process is not None and gateway.process is not None
        token = identity.token("admin")
        gateway_url = urllib.parse.urlsplit(gateway.url)
        connection = http.client.HTTPConnection(gateway_url.hostname or "127.0.0.1", gateway_url.port, timeout=60)
        shown = _check(connection, token, args.jobs)
        print("the pages show: " + ", ".join(f"{key} {value:,}" for key, value in shown.items()), flush=True)

        for _ in range(args.warmup):
            for _, path in PAGES:
                _http_get(connection, path, token)

        processes = {"gateway": gateway.process.pid, "server": server.process.pid}
        meter = CpuMeter(processes, args.db_name if args.db == "postgresql" else "")
        figures = {name: PageFigures() for name, _ in PAGES}
        print(f"load average before: {_load_average()}", flush=True)
        for load in range(args.loads):
            for name, path in PAGES:
                meter.refresh()
                before = meter.read()
                clock = time.perf_counter()
                body = _http_get(connection, path, token)
                figures[name].seconds.append(time.perf_counter() - clock)
                after = meter.read()
                figures[name].add_cpu({who: after[who] - before[who] for who in after})
                figures[name].size = len(body)
            if (load + 1) % 10 == 0:
                print(f"{load + 1}/{args.loads} loads of each page", flush=True)
        print(f"load average after: {_load_average()}", flush=True)

        whos = list(next(iter(figures.values())).cpu)
        header = f"{'page':<16} {'p50 ms':>8} {'p99 ms':>8} {'KB':>6} " + " ".join(f"{w + ' CPU ms':>17}" for w in whos)
        print(header)
        results: dict[str, tuple[float, float]] = {}
        for (name, path), page in zip(PAGES, figures.values(), strict=True):
            results[name] = _percentiles(page.seconds)
            cpu = " ".join(f"{page.cpu[who] / len(page.seconds) * 1e3:>17.1f}" for who in whos)
            print(f"{name:<16} {results[name][0]:>8.1f} {results[name][1]:>8.1f} {page.size / 1024:>6.0f} {cpu}"
                  f"   {path}")

        if args.profile:
            _profiles(connection, token, processes, args.profile, args.profile_seconds)
        connection.close()

        print(f"jobs_page_p50_ms={results['jobs_page'][0]:.1f} jobs_page_p99_ms={results['jobs_page'][1]:.1f} "
              f"errors_page_p50_ms={results['errors_page'][0]:.1f} errors_page_p99_ms={results['errors_page'][1]:.1f} "
              f"jobs_filtered_p50_ms={results['jobs_filtered'][0]:.1f} "
              f"jobs_filtered_p99_ms={results['jobs_filtered'][1]:.1f}")
        return 0
    finally:
        for handle in reversed(started):
            handle.stop()
        if database:
            drop_database(database)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
