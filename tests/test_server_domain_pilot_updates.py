"""How a pilot's update applies to a job, with no database: fencing, heartbeats, failures,
ends, and what each update reports."""

from __future__ import annotations

from typing import Any

import pytest

from panda_runtime.service.errors import FailedPrecondition, NotFound, PermissionDenied
from server_svc.domain.jobs import OutputFile
from server_svc.domain.pilot_updates import MAX_LOG_TAIL, PilotUpdate, apply_pilot_update, apply_pilot_updates
from server_svc.domain.states import JobState
from tests.server_domain_support import EARLIER, NOW, make_job


def _update(state: JobState, **fields: Any) -> PilotUpdate:
    return PilotUpdate(**{"job_id": 7, "attempt": 1, "state": state, "pilot_id": "pilot-1", "queues": frozenset({"*"}),
                          **fields})


def test_an_update_for_another_attempt_is_stale() -> None:
    job = make_job(attempt=2)
    with pytest.raises(FailedPrecondition) as refused:
        apply_pilot_update(job, _update(JobState.FINISHED, attempt=1), NOW)
    assert "STALE_ATTEMPT" in str(refused.value.to_status())
    assert "the update for attempt 1 is stale" in refused.value.message
    assert job.state is JobState.RUNNING


def test_only_the_pilot_the_job_was_sent_to_may_report_on_it() -> None:
    job = make_job(pilot_id="pilot-1")
    with pytest.raises(PermissionDenied) as refused:
        apply_pilot_update(job, _update(JobState.FAILED, pilot_id="pilot-2"), NOW)
    assert refused.value.message == "job 7 was not sent to pilot pilot-2"
    assert (job.state, job.attempt, job.error_code) == (JobState.RUNNING, 1, 0)
    # Nor does a job sent to no pilot (gone back to activated, same attempt) take anyone's report.
    unheld = make_job(pilot_id="", state=JobState.ACTIVATED)
    with pytest.raises(PermissionDenied):
        apply_pilot_update(unheld, _update(JobState.RUNNING, pilot_id="pilot-2"), NOW)
    assert unheld.state is JobState.ACTIVATED


def test_a_pilot_reports_only_on_jobs_of_queues_its_token_names() -> None:
    job = make_job(pilot_id="pilot-1")  # of queue local
    with pytest.raises(PermissionDenied) as refused:
        apply_pilot_update(job, _update(JobState.FINISHED, queues=frozenset({"other"})), NOW)
    assert "queue local, which the token of pilot pilot-1 does not name" in refused.value.message
    assert job.state is JobState.RUNNING
    apply_pilot_update(job, _update(JobState.FINISHED, queues=frozenset({"other", "local"})), NOW)
    assert job.state is JobState.FINISHED


def test_a_stale_attempt_of_a_job_sent_to_another_pilot_is_not_that_pilots_business() -> None:
    job = make_job(attempt=2, pilot_id="pilot-2")
    with pytest.raises(PermissionDenied):
        apply_pilot_update(job, _update(JobState.FINISHED, attempt=1, pilot_id="pilot-1"), NOW)
    # The same pilot, or none holding it: it learns its attempt is over.
    for holder in ("pilot-1", ""):
        with pytest.raises(FailedPrecondition, match="the update for attempt 1 is stale"):
            apply_pilot_update(make_job(attempt=2, pilot_id=holder), _update(JobState.FINISHED, attempt=1), NOW)


def test_repeating_the_state_is_a_heartbeat() -> None:
    job = make_job(state=JobState.RUNNING, max_rss_mb=100, cpu_seconds=5.0)
    change = apply_pilot_update(job, _update(JobState.RUNNING, max_rss_mb=80, cpu_seconds=9.0), NOW)
    assert change.events == []
    assert (job.state, job.state_time, job.heartbeat_time, job.update_time) == (JobState.RUNNING, EARLIER, NOW, NOW)
    # Peak memory and CPU time only grow.
    assert (job.max_rss_mb, job.cpu_seconds) == (100, 9.0)


def test_a_failure_with_attempts_left_reports_failed_and_the_job_comes_back() -> None:
    job = make_job(attempt=1, max_attempts=2)
    log = "x" * (MAX_LOG_TAIL + 10)
    applied = apply_pilot_updates(
        {7: job}, [_update(JobState.FAILED, exit_code=1, error_code=1137, error_diag="", log_tail=log)], NOW
    )
    (outcome,) = applied.outcomes
    assert (outcome.state, outcome.error) == (JobState.FAILED, None)  # its own end, not the retry's state
    assert (job.state, job.attempt, job.exit_code, len(job.log_tail)) == (JobState.ACTIVATED, 2, 1, MAX_LOG_TAIL)
    assert job.error_diag == "failed with error 1137"
    assert applied.changes.reactivated == 1


def test_a_job_that_finished_before_its_kill_arrived_counts_as_finished() -> None:
    job = make_job(kill_requested=True)
    apply_pilot_update(job, _update(JobState.FINISHED), NOW)
    assert (job.state, job.kill_requested, job.end_time) == (JobState.FINISHED, False, NOW)


def test_a_change_the_lifecycle_forbids_is_refused() -> None:
    job = make_job(state=JobState.FINISHED)
    with pytest.raises(FailedPrecondition, match="job 7 is finished: it cannot become running"):
        apply_pilot_update(job, _update(JobState.RUNNING), NOW)


def test_a_finished_job_registers_its_outputs_and_records_its_end() -> None:
    job = make_job()
    outputs = [OutputFile(7, 1, "out.root", 10, "0000000a")]
    change = apply_pilot_update(job, _update(JobState.FINISHED, exit_code=0, output_files=outputs), NOW)
    assert change.outputs == outputs
    assert [(e.state, e.reason) for e in change.events] == [
        (JobState.FINISHED, "finished, 1 output file(s) registered")
    ]
    assert (job.end_time, job.heartbeat_time) == (NOW, NOW)


def test_outputs_register_only_when_the_job_finishes() -> None:
    job = make_job(state=JobState.RUNNING)
    outputs = [OutputFile(7, 1, "out.root", 10, "0000000a")]
    assert apply_pilot_update(job, _update(JobState.TRANSFERRING, output_files=outputs), NOW).outputs == []


def test_a_confirmed_kill_ends_cancelled() -> None:
    job = make_job(kill_requested=True)
    change = apply_pilot_update(job, _update(JobState.CANCELLED, error_code=137), NOW)
    assert [(e.state, e.reason, e.error_code) for e in change.events] == [
        (JobState.CANCELLED, "killed; the pilot confirmed", 137)
    ]


def test_a_batch_applies_in_order_and_one_refusal_stops_no_other() -> None:
    first, second = make_job(job_id=7, state=JobState.SENT), make_job(job_id=8, state=JobState.SENT)
    updates = [
        _update(JobState.RUNNING, job_id=7), _update(JobState.FINISHED, job_id=7),
        _update(JobState.FINISHED, job_id=9),  # no such job
        _update(JobState.FINISHED, job_id=8, attempt=3),  # stale
        _update(JobState.RUNNING, job_id=8),
    ]
    applied = apply_pilot_updates({7: first, 8: second}, updates, NOW)
    assert [(o.job_id, o.state) for o in applied.outcomes] == [
        (7, JobState.RUNNING), (7, JobState.FINISHED), (9, None), (8, JobState.SENT), (8, JobState.RUNNING),
    ]
    assert [type(o.error) for o in applied.outcomes] == [type(None), type(None), NotFound, FailedPrecondition,
                                                         type(None)]
    assert list(applied.changes.jobs) == [7, 8]
    assert [(e.job_id, e.state) for e in applied.changes.events] == [
        (7, JobState.RUNNING), (7, JobState.FINISHED), (8, JobState.RUNNING),
    ]
