"""The retry policy, with no database: when a failed job is retried, and what the retry is."""

from __future__ import annotations

from server_svc.domain.retry import fail_attempt, is_retried
from server_svc.domain.states import JobState
from tests.server_domain_support import NOW, make_job


def test_a_failed_job_is_retried_while_it_has_attempts_left() -> None:
    assert is_retried(make_job(attempt=1, max_attempts=3))
    assert is_retried(make_job(attempt=2, max_attempts=3))
    assert not is_retried(make_job(attempt=3, max_attempts=3))
    assert not is_retried(make_job(attempt=1, max_attempts=1))


def test_a_job_told_to_stop_is_never_retried() -> None:
    assert not is_retried(make_job(attempt=1, max_attempts=3, kill_requested=True))


def test_a_retry_is_the_next_attempt_activated_on_no_pilot() -> None:
    job = make_job(attempt=1, max_attempts=3)
    change = fail_attempt(job, NOW, 1137, "stage-out failed")
    assert change.reactivated
    assert [(e.previous_state, e.state, e.attempt) for e in change.events] == [
        (JobState.RUNNING, JobState.FAILED, 1), (JobState.FAILED, JobState.ACTIVATED, 2),
    ]
    assert change.events[0].reason == "stage-out failed" and change.events[0].error_code == 1137
    assert change.events[1].reason == "retry: attempt 2 of 3 after error 1137"
    assert (job.state, job.attempt, job.pilot_id, job.node) == (JobState.ACTIVATED, 2, "", "")
    assert (job.start_time, job.end_time, job.heartbeat_time) == (None, None, None)
    # The error stays on the job, for whoever looks at why it is on its second attempt.
    assert (job.error_code, job.error_diag, job.state_time) == (1137, "stage-out failed", NOW)


def test_the_last_attempt_ends_failed() -> None:
    job = make_job(attempt=3, max_attempts=3)
    change = fail_attempt(job, NOW, 100, "lost heartbeat")
    assert not change.reactivated
    assert [e.state for e in change.events] == [JobState.FAILED]
    assert (job.state, job.attempt, job.end_time, job.pilot_id) == (JobState.FAILED, 3, NOW, "pilot-1")


def test_a_job_told_to_stop_ends_cancelled_when_it_fails() -> None:
    job = make_job(attempt=1, max_attempts=3, kill_requested=True)
    change = fail_attempt(job, NOW, 137, "payload killed")
    assert not change.reactivated
    assert [(e.state, e.reason, e.error_code) for e in change.events] == [
        (JobState.CANCELLED, "killed (payload killed)", 137)
    ]
    assert (job.state, job.attempt, job.end_time) == (JobState.CANCELLED, 1, NOW)
