"""The server's typed records and its tables name the same columns: the stores build records
from rows by those names (and positionally, in the records' order)."""

from __future__ import annotations

from dataclasses import fields

from server_svc.domain.jobs import Job, JobEvent, JobFile, JobRecord, OutputFile
from server_svc.domain.queues import Queue
from server_svc.store.job_rows import MUTABLE
from server_svc.store.tables import job_events, job_files, jobs, queues


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def test_a_job_record_is_every_column_of_a_job_with_its_files_and_history() -> None:
    assert sorted(_names(JobRecord)) == sorted([c.name for c in jobs.columns] + ["files", "history"])
    assert _names(JobRecord)[: len(_names(Job))] == _names(Job)


def test_the_rules_may_change_only_columns_that_are_written_back() -> None:
    assert set(MUTABLE) <= set(_names(Job))
    assert set(_names(Job)) - set(MUTABLE) == {"job_id", "owner", "vo", "task_id", "max_attempts"}


def test_files_events_and_queues_match_their_tables() -> None:
    # A file is read with its storage element's URL (storage_url), which is the element's column.
    assert sorted(_names(JobFile)) == sorted([c.name for c in job_files.columns] + ["storage_url"])
    assert sorted(_names(JobEvent)) == sorted(c.name for c in job_events.columns)
    assert set(_names(OutputFile)) <= {c.name for c in job_files.columns}
    assert sorted(_names(Queue)) == sorted([c.name for c in queues.columns] + ["job_counts"])
