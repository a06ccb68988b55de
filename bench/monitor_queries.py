"""The web monitor's queries on a large jobs table: N jobs (default 100,000) generated straight
into a fresh PostgreSQL database, then each ListJobs page and CountJobs call the monitor makes,
run through the server's own store (the statements the server runs), timed, and each statement
run again under EXPLAIN (ANALYZE, BUFFERS). Prints one line per query: its median time over the
runs and, per statement, the execution time PostgreSQL reports and the plan's scans.

    .venv/bin/python bench/monitor_queries.py                  # 100,000 jobs, the current schema
    .venv/bin/python bench/monitor_queries.py --revision 0010  # the same, before the monitor's indexes
    .venv/bin/python bench/monitor_queries.py --compare        # before, the upgrade to head timed, after
    .venv/bin/python bench/monitor_queries.py --jobs 10000 --plans   # and print every plan in full

The database `panda_bench_monitor` on 127.0.0.1:5432 is dropped and made anew (`--keep` keeps
it afterwards, for psql)."""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from panda_runtime.service.db import is_sqlite, make_engine, upgrade_database
from panda_runtime.service.filtering import parse_filter
from panda_runtime.service.ordering import decode_page, encode_page, parse_order_by
from panda_runtime.service.principals import EVERYTHING, Scope
from server_svc.servicers.job_servicer import FILTER_FIELDS, SORT_FIELDS
from server_svc.store.jobs import JobStore
from server_svc.store.tables import jobs
from tools.cluster import drop_database, fresh_database

SORT_KINDS = {name: FILTER_FIELDS[name] for name in SORT_FIELDS}
# A week of jobs, as a busy monitor sees them: mostly finished, some failed, a few in flight.
STATES = [("finished", 60), ("failed", 15), ("running", 8), ("activated", 10), ("cancelled", 4), ("holding", 3)]
PILOT_ERRORS = [1099, 1137, 1150, 1165, 1201, 1212, 1213, 1235, 1305, 1305, 1305, 1331]
SERVER_ERRORS = [100, 102, 103]
NOW = datetime(2026, 12, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


def generate(engine: Engine, count: int, seed: int, now: datetime = NOW) -> float:
    """`count` jobs in 200 queues, of 300 owners in 3 VOs and 2,000 tasks, created over the week
    before `now` (a fixed date unless given, so that this script's time filters stay the same);
    inserted in batches, then the table analysed. Returns the seconds it took."""
    rng = random.Random(seed)
    states = [s for s, weight in STATES for _ in range(weight)]
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    with engine.begin() as conn:
        for index in range(count):
            created = now - WEEK + WEEK * (index / count) + timedelta(seconds=rng.random())
            state = rng.choice(states)
            updated = min(now, created + timedelta(minutes=rng.expovariate(1 / 90)))
            failed = state == "failed"
            owner = rng.randrange(300)
            batch.append({
                "state": state, "queue": f"SITE_{rng.randrange(200):03d}", "owner": f"user{owner:03d}",
                "vo": ("atlas", "cms", "lhcb")[owner % 3], "task_id": 1 + rng.randrange(2000),
                "priority": rng.choice((0, 100, 500, 900, 1000)), "attempt": 1 + min(2, int(rng.expovariate(2))),
                "max_attempts": 3, "command": ["/bin/true"], "environment": {}, "cores": 1, "memory_mb": 2000,
                "walltime_seconds": 3600, "disk_mb": 0, "label": rng.choice(("reco", "simul", "merge", "user")),
                "error_code": rng.choice(SERVER_ERRORS if rng.random() < 0.1 else PILOT_ERRORS) if failed else 0,
                "error_diag": "generated" if failed else "", "exit_code": 1 if failed else 0, "log_tail": "",
                "pilot_id": f"pilot-{rng.randrange(5000)}" if state != "activated" else "",
                "node": f"wn{rng.randrange(1000):04d}" if state != "activated" else "",
                "max_rss_mb": 0, "cpu_seconds": 0.0, "kill_requested": False, "create_time": created,
                "update_time": updated, "state_time": updated,
            })
            if len(batch) == 10_000:
                conn.execute(insert(jobs), batch)
                batch = []
        if batch:
            conn.execute(insert(jobs), batch)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE jobs" if is_sqlite(engine) else "VACUUM ANALYZE jobs"))
    return time.perf_counter() - started


@contextmanager
def captured(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (and their parameters) the engine runs meanwhile."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def explain(engine: Engine, statement: str, parameters: Any) -> tuple[float, list[str]]:
    """PostgreSQL's execution time (ms) of one statement, and its plan's lines."""
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            lines = [row[0] for row in cursor.fetchall()]
    total = next(float(line.split(":")[1].split()[0]) for line in lines if line.startswith("Execution Time"))
    return total, lines


def _scans(plan: list[str]) -> str:
    """The plan's scans and sorts, e.g. `Index Scan using ix_jobs_state_update_time`."""
    kinds = ("Scan", "Sort", "Aggregate")
    found = []
    for line in plan:
        step = line.strip().removeprefix("->").strip()
        if any(kind in step.split("  (")[0] for kind in kinds) and not step.startswith(("Sort Key", "Sort Method")):
            found.append(step.split("  (")[0].replace(" on jobs", ""))
    return "; ".join(dict.fromkeys(found))


def run(engine: Engine, store: JobStore, name: str, call: Callable[[], Any], runs: int, plans: bool) -> None:
    call()  # warm: the plan cache and the buffers
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    with captured(engine) as statements:
        call()
    explained = [explain(engine, statement, parameters) for statement, parameters in statements
                 if statement.lstrip().upper().startswith("SELECT") and " job_files" not in statement]
    parts = " | ".join(f"{ms:.2f} ms: {_scans(plan)}" for ms, plan in explained)
    print(f"{name:<58} median {statistics.median(timings):7.2f} ms   [{parts}]", flush=True)
    if plans:
        for _, plan in explained:
            print("    " + "\n    ".join(plan))


def scenarios(store: JobStore) -> list[tuple[str, Callable[[], Any]]]:
    window = f'update_time > "{(NOW - timedelta(hours=12)).isoformat()}"'
    day = f'update_time > "{(NOW - timedelta(days=1)).isoformat()}"'
    alice = Scope(owner="user007", vos=frozenset())

    def page(filter_text: str, order_by: str = "", *, second: bool = False, scope: Scope = EVERYTHING,
             size: int = 100) -> Callable[[], Any]:
        where = parse_filter(filter_text, FILTER_FIELDS)
        ordering = parse_order_by(order_by, SORT_KINDS, "job_id")
        after = None
        if second:
            records, _ = store.list_jobs(where, limit=size, ordering=ordering, scope=scope)
            last = records[-1]
            token = encode_page(ordering, {f: getattr(last, f) for f in ordering.fields}, filter_text, order_by)
            after = decode_page(token, ordering, SORT_KINDS, filter_text, order_by)
        return lambda: store.list_jobs(where, limit=size + 1, ordering=ordering, after=after, scope=scope)

    def count(filter_text: str, *group_by: str, scope: Scope = EVERYTHING) -> Callable[[], Any]:
        where = parse_filter(filter_text, FILTER_FIELDS)
        return lambda: store.count_jobs(where, group_by, limit=100, scope=scope)

    found: list[tuple[str, Callable[[], Any]]] = [
        ("ListJobs newest first", page("")),
        ("ListJobs newest first, page 2", page("", second=True)),
        ("ListJobs state=FAILED, update_time window, update_time desc",
         page(f"state = FAILED AND {day}", "update_time desc")),
        ("ListJobs (FAILED OR CANCELLED) AND queue, newest first",
         page('state = FAILED OR state = CANCELLED AND queue = "SITE_017"')),
        ("ListJobs state=RUNNING, create_time desc, page 2", page("state = RUNNING", "create_time desc", second=True)),
        ("ListJobs queue, priority desc", page('queue = "SITE_042"', "priority desc")),
        ("ListJobs task_id, state", page("task_id = 1234", "state")),
        ("ListJobs error_code > 0, error_code desc", page("error_code > 0", "error_code desc")),
        ("ListJobs owner desc, page 2", page("", "owner desc", second=True)),
        ("ListJobs as a user, newest first", page("", scope=alice)),
        ("ListJobs as a user, update_time desc", page("", "update_time desc", scope=alice)),
    ]
    for field in ("state", "queue", "task_id", "owner", "error_code", "attempt"):
        found.append((f"CountJobs by {field}, state=FAILED, 12 h window", count(f"state = FAILED AND {window}", field)))
    for field in ("state", "queue", "task_id", "owner", "error_code", "attempt"):
        found.append((f"CountJobs by {field}, 12 h window", count(window, field)))
    found += [
        ("CountJobs errors: error_code, queue (failed, 12 h)", count(f"state = FAILED AND {window}", "error_code",
                                                                     "queue")),
        ("CountJobs by state, all jobs", count("", "state")),
        ("CountJobs by state, as a user, 12 h window", count(window, "state", scope=alice)),
    ]
    return found


def measure(engine: Engine, revision: str, runs: int, plans: bool) -> None:
    with engine.connect() as conn:
        indexes = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'jobs' ORDER BY 1"))
        names = ", ".join(row[0] for row in indexes)
    print(f"revision={revision} indexes: {names}", flush=True)
    store = JobStore(engine)
    for name, call in scenarios(store):
        run(engine, store, name, call, runs, plans)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each query (median printed)")
    parser.add_argument("--revision", default="head", help="migrate to this revision only (e.g. 0010: before)")
    parser.add_argument("--compare", action="store_true",
                        help="run at 0010, time the upgrade to head (the indexes' build), run again")
    parser.add_argument("--db-name", default="panda_bench_monitor")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    revision = "0010" if args.compare else args.revision
    with tempfile.TemporaryDirectory() as scratch:
        url = fresh_database("postgresql", Path(scratch), args.db_name, revision=revision)
    engine = make_engine(url)
    try:
        seconds = generate(engine, args.jobs, args.seed)
        print(f"jobs={args.jobs} generated_s={seconds:.1f}", flush=True)
        measure(engine, revision, args.runs, args.plans)
        if args.compare:
            started = time.perf_counter()
            upgrade_database(url)
            print(f"upgrade to head (building the indexes): {time.perf_counter() - started:.2f} s", flush=True)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE jobs"))
            measure(engine, "head", args.runs, args.plans)
    finally:
        engine.dispose()
        if not args.keep:
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
