"""What the server's job events do, without a database: which events change a job (replays
change nothing), what becomes of the chunks of an ended job, what counts toward the failure
rate, a file's state in a task, and where the watcher resumes in the event stream."""

from __future__ import annotations

import itertools

import pytest

from jedi_svc.domain import outcomes
from jedi_svc.domain.chunks import file_task_state
from jedi_svc.domain.cursors import GIVE_UP_SECONDS, CursorGaps
from jedi_svc.domain.jobs import JobDetails, JobEvent
from jedi_svc.domain.states import TaskState
from tests.jedi_domain_support import AT, make_chunk, make_job

S = TaskState


# -- events on jobs -------------------------------------------------------------------------------


def test_an_event_at_or_before_the_last_cursor_or_after_the_end_changes_nothing() -> None:
    job = make_job(1, state="running", last_cursor=50)
    assert not outcomes.changes_job(JobEvent(50, 101, 7, "finished"), job)
    assert not outcomes.changes_job(JobEvent(40, 101, 7, "finished"), job)
    assert not outcomes.changes_job(JobEvent(51, 101, 7, "running"), job)  # the state it is in
    assert outcomes.changes_job(JobEvent(51, 101, 7, "finished"), job)
    ended = make_job(1, state="failed", last_cursor=50)
    assert not outcomes.changes_job(JobEvent(60, 101, 7, "finished"), ended)


def test_applying_an_end_records_the_error_and_a_finished_jobs_measurements() -> None:
    job = make_job(1, state="running", last_cursor=10)
    details = JobDetails([], max_rss_mb=900, walltime_seconds=12.5, cpu_seconds=11.0)
    assert outcomes.apply_event(job, JobEvent(11, 101, 7, "finished"), details, AT)
    assert (job.state, job.last_cursor, job.end_time) == ("finished", 11, AT)
    assert (job.max_rss_mb, job.walltime_used, job.cpu_seconds) == (900, 12.5, 11.0)
    assert not outcomes.apply_event(job, JobEvent(11, 101, 7, "finished"), details, AT)  # a replay
    failed = make_job(2, state="running")
    assert outcomes.apply_event(failed, JobEvent(12, 102, 7, "failed", 1201, "x" * 5000), details, AT)
    assert failed.error_code == 1201 and len(failed.error_diag) == outcomes.MAX_DIAG and failed.max_rss_mb == 0
    starting = make_job(3)
    assert outcomes.apply_event(starting, JobEvent(13, 103, 7, "running"), None, AT)
    assert starting.end_time is None and starting.last_cursor == 13


# -- what becomes of a file whose job ended ----------------------------------------------------


def test_a_chunk_of_a_failed_job_is_retried_while_attempts_are_left_then_fails() -> None:
    assert outcomes.chunk_outcome("failed", S.RUNNING, 1, 3) == "ready"
    assert outcomes.chunk_outcome("failed", S.RUNNING, 3, 3) == "failed"
    assert outcomes.chunk_outcome("closed", S.SCOUTING, 2, 3) == "ready"
    assert outcomes.chunk_outcome("finished", S.RUNNING, 3, 3) == "finished"


def test_a_chunk_is_cancelled_when_its_task_is_killed_or_its_job_cancelled_while_finishing() -> None:
    assert outcomes.chunk_outcome("failed", S.ABORTING, 1, 3) == "cancelled"
    assert outcomes.chunk_outcome("cancelled", S.FINISHING, 1, 3) == "cancelled"
    assert outcomes.chunk_outcome("failed", S.FINISHING, 1, 3) == "ready"
    assert outcomes.chunk_outcome("cancelled", S.RUNNING, 1, 3) == "ready"
    assert outcomes.chunk_outcome("finished", S.ABORTING, 1, 3) == "finished"


@pytest.mark.parametrize("job_state", ["finished", "failed", "cancelled", "closed"])
def test_every_outcome_is_the_rule_written_out(job_state: str) -> None:
    for task_state, attempts in itertools.product(TaskState, (1, 3)):
        stopping = task_state in (S.ABORTING, S.FINISHING)
        if job_state == "finished":
            expected = "finished"
        elif task_state == S.ABORTING or (stopping and job_state == "cancelled"):
            expected = "cancelled"
        else:
            expected = "ready" if attempts < 3 else "failed"
        assert outcomes.chunk_outcome(job_state, task_state, attempts, 3) == expected, (task_state, attempts)


def test_the_failure_rate_counts_finished_and_failed_jobs_but_not_those_cancelled_by_a_command() -> None:
    assert outcomes.counts_as("finished", S.RUNNING) == (1, 0)
    assert outcomes.counts_as("failed", S.RUNNING) == (0, 1)
    assert outcomes.counts_as("cancelled", S.RUNNING) == (0, 1)
    assert outcomes.counts_as("cancelled", S.FINISHING) == (0, 0)
    assert outcomes.counts_as("cancelled", S.ABORTING) == (0, 0)
    assert outcomes.counts_as("failed", S.ABORTING) == (0, 1)


def test_an_ended_job_changes_only_the_chunks_it_still_holds_and_leaves_its_error_on_them() -> None:
    job = make_job(5, state="failed", content_ids=[1, 2, 3], error_code=1305, error_diag="stage-in failed")
    chunks = {1: make_chunk(1, job_row=5, attempts=1), 2: make_chunk(2, job_row=9, attempts=2),
              3: make_chunk(3, job_row=5, attempts=3)}
    assert outcomes.chunk_outcomes(job, S.RUNNING, chunks) == [
        outcomes.ChunkOutcome(1, "ready", 1305, "stage-in failed"),
        outcomes.ChunkOutcome(3, "failed", 1305, "stage-in failed")]
    done = make_job(5, state="finished", content_ids=[1])
    earlier = {1: make_chunk(1, job_row=5, error_code=1201, error_diag="earlier")}
    assert outcomes.chunk_outcomes(done, S.RUNNING, earlier) == [outcomes.ChunkOutcome(1, "finished", 1201, "earlier")]


def test_a_files_state_in_a_task_comes_from_its_chunks() -> None:
    chunks = [make_chunk(1, status="finished", attempts=1, job_row=3),
              make_chunk(2, file_id=1, status="failed", attempts=2, job_row=8, error_code=1201, error_diag="oom"),
              make_chunk(3, file_id=1, status="finished", attempts=3, job_row=9)]
    state = file_task_state(7, chunks, {3: 103, 8: 108, 9: 109})
    assert (state.status, state.attempts, state.max_attempts, state.chunks) == ("failed", 3, 3, 3)
    # The job of the latest attempt, the error of the last chunk that had one.
    assert (state.job_id, state.error_code, state.error_diag) == (109, 1201, "oom")
    fresh = file_task_state(7, [make_chunk(1)], {})
    assert (fresh.status, fresh.job_id, fresh.error_code) == ("ready", 0, 0)


# -- the event stream's cursor ------------------------------------------------------------------


def test_skipped_cursors_are_missing_until_seen_or_given_up_and_resume_before_them() -> None:
    gaps = CursorGaps(10)
    gaps.seen([11, 14, 15], at=100.0)
    assert sorted(gaps.missing) == [12, 13] and gaps.last_seen == 15 and gaps.safe_cursor() == 11
    gaps.seen([13], at=101.0)  # a late commit
    assert sorted(gaps.missing) == [12] and gaps.last_seen == 15
    gaps.give_up(at=100.0 + GIVE_UP_SECONDS)
    assert gaps.missing == {12: 100.0}
    gaps.give_up(at=100.1 + GIVE_UP_SECONDS)
    assert not gaps.missing and gaps.safe_cursor() == 15


def test_a_fresh_start_or_a_huge_jump_is_no_gap() -> None:
    gaps = CursorGaps()
    gaps.seen([500, 501], at=0.0)
    assert not gaps.missing and gaps.safe_cursor() == 501
    gaps.seen([501 + 10_000], at=0.0)
    assert not gaps.missing and gaps.last_seen == 10_501
