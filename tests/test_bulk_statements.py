"""Statements run together (`run_statements`, one round trip on PostgreSQL): in order, each with
its own rows, and all or nothing with the transaction when one of them fails."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from panda_runtime.service.bulk import insert_statement, run_statements
from panda_runtime.service.db import make_engine
from server_svc.store.tables import queues


def _queue(name: str) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"queue_id": name, "status": "online", "max_cores": 0, "max_memory_mb": 0, "max_walltime_seconds": 0,
            "max_disk_mb": 0, "storage_element": "", "description": "", "create_time": now, "update_time": now}


def test_statements_run_in_order_and_return_their_own_rows(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            results = run_statements(conn, [
                None,
                insert_statement(conn, queues, [_queue("q-a"), _queue("q-b")]),
                (text("SELECT queue_id FROM queues WHERE queue_id LIKE 'q-%' ORDER BY queue_id"), {}),
                (text("SELECT count(*) AS n FROM queues WHERE queue_id = :name"), {"name": "q-b"}),
            ])
        # The select sees the insert before it; None entries keep their place.
        assert results == [[], [], [{"queue_id": "q-a"}, {"queue_id": "q-b"}], [{"n": 1}]]
    finally:
        engine.dispose()


def test_a_failing_statement_leaves_nothing_of_the_others(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            run_statements(conn, [
                insert_statement(conn, queues, [_queue("kept-only-if-all-pass")]),
                insert_statement(conn, queues, [_queue("twice"), _queue("twice")]),  # primary key taken
            ])
        with engine.connect() as conn:
            assert conn.execute(select(queues.c.queue_id)).scalars().all() == []
        # The connection went back to the pool in a usable state.
        with engine.begin() as conn:
            run_statements(conn, [insert_statement(conn, queues, [_queue("after")])])
        with engine.connect() as conn:
            assert conn.execute(select(queues.c.queue_id)).scalars().all() == ["after"]
    finally:
        engine.dispose()
