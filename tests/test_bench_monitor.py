"""The web monitor's benchmark, run small: on generated jobs it starts every service, checks that
the pages show what the database holds, loads each page and prints its figures. The figures
themselves are not judged here (benchmarks measure, tests check)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tools.cluster import drop_database, postgres_url

REPO_ROOT = Path(__file__).resolve().parent.parent
JOBS, LOADS = 2000, 3


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_the_benchmark_loads_each_page_and_prints_its_figures(db: str) -> None:
    db_name = f"panda_bench_test_{uuid.uuid4().hex[:10]}"
    try:
        result = subprocess.run(
            [sys.executable, "bench/monitor.py", "--db", db, "--db-name", db_name, "--jobs", str(JOBS),
             "--loads", str(LOADS), "--warmup", "1"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=240,
        )
    finally:
        if db == "postgresql":
            drop_database(postgres_url(db_name))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    lines = result.stdout.strip().splitlines()
    # What the pages showed, as JSON, before the clock started: every generated job.
    shown = next(line for line in lines if line.startswith("the pages show: "))
    assert shown.startswith(f"the pages show: jobs {JOBS:,}, failed_12h "), shown
    table = {line.split()[0]: line.split() for line in lines
             if line.split() and line.split()[0] in ("jobs_page", "jobs_filtered", "errors_page")}
    assert set(table) == {"jobs_page", "jobs_filtered", "errors_page"}, output[-4000:]
    assert table["jobs_page"][-1] == "/monitor/jobs"
    assert table["jobs_filtered"][-1] == "/monitor/jobs?state=failed&hours=12"
    figures = dict(item.split("=", 1) for item in lines[-1].split())
    assert set(figures) == {"jobs_page_p50_ms", "jobs_page_p99_ms", "errors_page_p50_ms", "errors_page_p99_ms",
                            "jobs_filtered_p50_ms", "jobs_filtered_p99_ms"}
    assert all(float(value) > 0 for value in figures.values()), lines[-1]
    assert float(figures["jobs_page_p50_ms"]) <= float(figures["jobs_page_p99_ms"])
