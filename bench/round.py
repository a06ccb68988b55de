#!/usr/bin/env python
"""One dispatch round's transaction alone: `DispatchStore.exchange` for P pilots, each ending its job
(RUNNING and FINISHED) and taking the next, in a plain loop with no server, streams or other
load. What a round costs in the database and the store's Python, to set beside its duration
under load in `dispatch.py`.

    python bench/round.py --db postgresql --pilots 50
    python bench/round.py --db sqlite --pilots 50 --rounds 200

The last line reads `round_p50_ms=… round_p90_ms=… per_job_us=…`.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))  # tools/ is not an installed package


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--pilots", type=int, default=50, help="pilots served by each round (one job each)")
    parser.add_argument("--rounds", type=int, default=200, help="rounds measured (after 20 not measured)")
    args = parser.parse_args()

    from panda_runtime.service.db import make_engine
    from server_svc.domain.dispatch import Claim, Offer
    from server_svc.domain.job_specs import JobSpec
    from server_svc.domain.pilot_updates import PilotUpdate
    from server_svc.domain.states import JobState
    from server_svc.store.dispatch import DispatchStore
    from server_svc.store.queue_store import QueueStore
    from server_svc.store.submission import SubmissionStore
    from tools.cluster import drop_database, fresh_database

    data_dir = Path(tempfile.mkdtemp(prefix="panda-round-"))
    url = fresh_database(args.db, data_dir, f"panda_round_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    try:
        jobs, queues = DispatchStore(engine), QueueStore(engine)
        queues.create({"queue_id": "bench", "status": "online"})
        spec = JobSpec(queue="bench", command=["/bin/true"], environment={}, cores=1, memory_mb=1000,
                       walltime_seconds=3600, disk_mb=0, priority=0, max_attempts=1)
        total = args.pilots * (args.rounds + 22)
        for start in range(0, total, 5000):
            SubmissionStore(engine).submit([spec] * min(5000, total - start), owner="bench")
        claim = Claim("bench", Offer(1, 4000, 2 * 86400), [(f"pilot-{i}", "node", 1) for i in range(args.pilots)])
        held = jobs.exchange([], [claim]).assigned
        durations = []
        for number in range(args.rounds + 20):
            updates = [
                PilotUpdate(job_id=job.job_id, attempt=job.attempt, state=state, pilot_id=pilot_id,
                            queues=frozenset({"bench"}))
                for pilot_id, assigned in held.items() for job in assigned
                for state in (JobState.RUNNING, JobState.FINISHED)
            ]
            started = time.perf_counter()
            result = jobs.exchange(updates, [claim])
            if number >= 20:
                durations.append(time.perf_counter() - started)
            refused = [outcome for outcome in result.outcomes if outcome.error is not None]
            if refused or sum(len(a) for a in result.assigned.values()) != args.pilots:
                raise SystemExit(f"round {number}: {len(refused)} updates refused, "
                                 f"{sum(len(a) for a in result.assigned.values())} jobs claimed")
            held = result.assigned
        durations.sort()
        p50, p90 = (durations[int(len(durations) * q)] * 1000 for q in (0.5, 0.9))
        print(f"{args.rounds} rounds of {args.pilots} pilots ({2 * args.pilots} updates, {args.pilots} claims) "
              f"on {args.db}: p50 {p50:.2f} ms, p90 {p90:.2f} ms")
        print(f"round_p50_ms={p50:.2f} round_p90_ms={p90:.2f} per_job_us={p50 * 1000 / args.pilots:.0f}")
    finally:
        engine.dispose()
        drop_database(url)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
