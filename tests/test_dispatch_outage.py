"""A failed dispatch round does not turn finished jobs into failures. While the database refuses
the rounds that would write a job's end (here a trigger refusing every job's change to finished,
as a database briefly away refuses everything), the pilot resends its unacknowledged final
update within seconds, and the lost-heartbeat watchdog spares the job of a pilot still heard on
its stream; once the database takes the writes again the job ends finished, in its first
attempt, not failed and run again. A real server and pilot, on both databases."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from panda.server.v1 import job_pb2
from panda_runtime.service.db import normalize_url
from tests.server_support import get_job, submit, wait_for
from tools.cluster import ServerHandle

J = job_pb2.Job

_REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse_finished BEFORE UPDATE OF state ON jobs WHEN NEW.state = 'finished' "
        "BEGIN SELECT RAISE(ABORT, 'the database refuses'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_finished() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the database refuses'; END $$",
        "CREATE TRIGGER refuse_finished BEFORE UPDATE ON jobs FOR EACH ROW WHEN (NEW.state = 'finished') "
        "EXECUTE FUNCTION refuse_finished()",
    ],
}
_ACCEPT = {
    "sqlite": ["DROP TRIGGER refuse_finished"],
    "postgresql": ["DROP TRIGGER refuse_finished ON jobs", "DROP FUNCTION refuse_finished()"],
}


@pytest.fixture
def database(database_url: str) -> Iterator[tuple[Engine, str]]:
    engine = create_engine(normalize_url(database_url), connect_args={"timeout": 60} if "sqlite" in database_url
                           else {})
    yield engine, engine.dialect.name
    engine.dispose()


def _run(engine: Engine, statements: list[str]) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_final_updates_of_failed_rounds_are_resent_and_the_jobs_end_finished(  # type: ignore[no-untyped-def]
    server: ServerHandle, database: tuple[Engine, str], jobs_stub, local_queue, start_pilot
) -> None:
    engine, kind = database
    jobs = submit(jobs_stub, *[J(queue="local", command=["/bin/sh", "-c", f"echo {i}"], max_attempts=2)
                               for i in range(2)])
    _run(engine, _REFUSE[kind])
    start_pilot()
    # The pilot takes the first job (however long it takes to start on a loaded machine) ...
    deadline = time.monotonic() + 60
    while get_job(jobs_stub, jobs[0].job_id).state == J.STATE_ACTIVATED:
        assert time.monotonic() < deadline, "the pilot never took the first job"
        time.sleep(0.2)
    # ... then long enough for the lost-heartbeat rule (4 s here; the watchdog looks every 0.5 s) to fail
    # a job whose heartbeats stopped when its payload ended.
    time.sleep(10)
    held = [get_job(jobs_stub, job.job_id) for job in jobs]
    # The first job's end is refused: it stays running; no job failed for a lost heartbeat.
    assert (held[0].state, held[0].attempt) == (J.STATE_RUNNING, 1), held[0]
    assert all(j.attempt == 1 and J.STATE_FAILED not in [e.state for e in j.history] for j in held), held
    assert "dispatch round failed" in server.log()

    _run(engine, _ACCEPT[kind])
    # Resent within seconds (a fixed resend would take a minute): each ends finished, once.
    for job in jobs:
        done = wait_for(jobs_stub, job.job_id, timeout=15)
        assert (done.state, done.attempt) == (J.STATE_FINISHED, 1), done.error_diag
        assert [e for e in done.history if e.state == J.STATE_FAILED] == []
