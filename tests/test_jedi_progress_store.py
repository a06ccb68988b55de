"""A task's progress as the task store counts it, in SQL, on SQLite and PostgreSQL: the same
answer as the domain's rule for every mix of chunk statuses."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
from sqlalchemy import insert

from jedi_svc.domain.progress import CHUNK_STATUSES, Progress
from jedi_svc.store.tables import contents
from jedi_svc.store.task_store import TaskStore
from panda_runtime.service.db import make_engine
from tools.cluster import drop_database, fresh_database


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_task_store_counts_files_by_the_same_rule_as_file_status(kind: str, tmp_path: Path) -> None:
    """The store counts files by status in SQL; every mix of up to three chunk statuses must
    come out as file_status says."""
    url = fresh_database(kind, tmp_path, f"panda_progress_{uuid.uuid4().hex[:10]}")
    engine = make_engine(url)
    try:
        mixes = [mix for size in (1, 2, 3) for mix in itertools.combinations_with_replacement(CHUNK_STATUSES, size)]
        chunks = [(file_id, status) for file_id, mix in enumerate(mixes, start=1) for status in mix]
        with engine.begin() as conn:
            conn.execute(insert(contents), [
                {"task_id": 7, "file_id": file_id, "split_group": 0, "status": status, "max_attempts": 1}
                for file_id, status in chunks
            ])
            progress = TaskStore(engine)._progress(conn, [7])[7]
        expected = Progress.of(chunks)
        assert progress.files_total == len(mixes) == expected.files_total
        assert progress.by_status == expected.by_status
    finally:
        engine.dispose()
        drop_database(url)
