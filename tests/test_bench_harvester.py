"""The harvester benchmark, run small: a real harvester starts pilots for work on an empty queue,
every job finishes, the adjuster's round runs against the server, and the figures are printed.
The figures themselves are not judged here (benchmarks measure, tests check)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tools.cluster import drop_database, postgres_url

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS, MAX_WORKERS, QUEUES = 30, 2, 50


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_the_benchmark_runs_every_job_through_harvesters_pilots_and_prints_its_figures(db: str) -> None:
    db_name = f"panda_bench_test_{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            [sys.executable, "bench/harvester.py", "--db", db, "--db-name", db_name, "--jobs", str(JOBS),
             "--max-workers", str(MAX_WORKERS), "--queues", str(QUEUES), "--round-jobs", "200",
             "--adjust-runs", "3", "--round-runs", "2", "--timeout", "120"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=280,
        )
    finally:
        if db == "postgresql":
            drop_database(postgres_url(db_name))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = result.stdout.strip().splitlines()
    assert f"  {JOBS} jobs finished in " in result.stdout, output[-4000:]
    figures = dict(item.split("=", 1) for item in lines[-1].split())
    assert list(figures) == ["first_job_running_s", "jobs_per_s", "adjust_1000_queues_ms"], lines[-1]
    assert all(float(value) > 0 for value in figures.values()), lines[-1]
    extra = dict(item.split("=", 1) for item in lines[-2].split())
    assert 1 <= int(extra["workers_started"]) <= MAX_WORKERS, lines[-2]
    assert int(extra["round_queues"]) == QUEUES, lines[-2]
    assert all(float(extra[key]) > 0 for key in ("harvester_round_ms", "cpu_server_ms_per_job",
                                                  "cpu_harvester_ms_per_job", "cpu_pilots_payloads_ms_per_job")), \
        lines[-2]
