"""The dispatch benchmark, run small: with either kind of simulated pilots it runs every job to
finished, checks that through the server, and prints its figures. The figures themselves are
not judged here (benchmarks measure, tests check)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tools.cluster import drop_database, postgres_url

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS, PILOTS, IDLE_STREAMS = 300, 10, 20


@pytest.mark.parametrize(("client", "db", "mode"), [
    ("cxx", "postgresql", "protocol"), ("cxx", "sqlite", "process"), ("python", "sqlite", "protocol"),
])
def test_the_benchmark_runs_every_job_to_finished_and_prints_its_figures(client: str, db: str, mode: str) -> None:
    db_name = f"panda_bench_test_{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            [sys.executable, "bench/dispatch.py", "--db", db, "--db-name", db_name, "--client", client,
             "--mode", mode, "--jobs", str(JOBS), "--pilots", str(PILOTS), "--idle-streams", str(IDLE_STREAMS),
             "--timeout", "120"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=280,
        )
    finally:
        if db == "postgresql":
            drop_database(postgres_url(db_name))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = result.stdout.strip().splitlines()
    assert f"verified: ListJobs(state = FINISHED).total_size = {JOBS} of {JOBS}" in lines
    assert f"dispatch latency ({JOBS} samples)" in result.stdout  # one per job, from every pilot
    figures = dict(item.split("=", 1) for item in lines[-1].split())
    assert set(figures) == {"jobs_per_s", "p50_ms", "p99_ms", "server_rss_mb", "dispatch_jobs_per_s",
                            "submit_jobs_per_s", "idle_rss_mb"}
    assert all(float(value) > 0 for value in figures.values()), lines[-1]
    assert float(figures["p50_ms"]) <= float(figures["p99_ms"])
