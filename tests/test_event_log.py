"""The job event log that WatchJobs serves: a cursor is never committed behind one a watcher has
already read, so resuming from the last cursor seen misses nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from panda_runtime.service.db import make_engine
from server_svc.domain.jobs import JobEvent
from server_svc.domain.states import JobState
from server_svc.store.events import EventLog, append_events


def _event(reason: str) -> JobEvent:
    return JobEvent(job_id=1, attempt=1, state=JobState.RUNNING, previous_state=JobState.STARTING,
                    time=datetime.now(UTC), error_code=0, reason=reason, queue="local", task_id=0)


def test_cursors_follow_commit_order(database_url: str) -> None:
    engine = make_engine(database_url)
    store = EventLog(engine)
    first_written, let_first_commit, second_committed = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with engine.begin() as conn:
            append_events(conn, [_event("first")])
            first_written.set()
            let_first_commit.wait(30)

    def second() -> None:
        with engine.begin() as conn:
            append_events(conn, [_event("second")])
        second_committed.set()

    writers = [threading.Thread(target=first), threading.Thread(target=second)]
    try:
        writers[0].start()
        assert first_written.wait(10)
        writers[1].start()
        # The second writer waits for the first, and a watcher sees neither yet (on SQLite the
        # watcher waits too, as every transaction there takes the one write lock): it can never
        # read the second event's cursor and then miss the first's.
        assert not second_committed.wait(1.5)
        seen: list[list[JobEvent]] = []
        watcher = threading.Thread(target=lambda: seen.append(store.events_after(0)))
        watcher.start()
        watcher.join(1.5)
        assert seen in ([], [[]])
    finally:
        let_first_commit.set()
        for writer in writers:
            writer.join(30)
    watcher.join(30)
    assert second_committed.is_set()
    events = store.events_after(0)
    assert [e.reason for e in events] == ["first", "second"]
    assert events[0].cursor < events[1].cursor
    engine.dispose()
