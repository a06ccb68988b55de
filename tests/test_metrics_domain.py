"""What the domain metrics say, with no database and no sockets: every state of every queue (0
when empty, so a series never vanishes), the oldest activated job's age, failed attempts by
error code, tasks by state, and which refused sign-ins the identity service counts as what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iam_svc.domain import oauth
from iam_svc.domain.oauth import OAuthError
from iam_svc.logic.metrics import refusal_reason
from jedi_svc.domain.states import TaskState
from jedi_svc.logic.metrics import tasks_by_state
from server_svc.domain.gauges import JobCensus, failed_attempts, jobs_by_queue_and_state, oldest_activated_ages
from server_svc.domain.jobs import JobEvent
from server_svc.domain.states import JobState

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_every_state_of_every_configured_queue_is_there_and_0_when_empty() -> None:
    census = JobCensus(queues=frozenset({"a", "b"}), counts={("a", "running"): 3, ("a", "finished"): 7})
    rows = {(queue, state): count for queue, state, count in jobs_by_queue_and_state(census)}
    assert set(rows) == {(queue, state.value) for queue in ("a", "b") for state in JobState}
    assert rows[("a", "running")] == 3 and rows[("a", "finished")] == 7
    assert rows[("a", "activated")] == 0 and rows[("b", "running")] == 0


def test_a_queue_no_longer_configured_keeps_its_jobs_and_an_unknown_state_is_kept() -> None:
    census = JobCensus(queues=frozenset({"a"}), counts={("gone", "failed"): 2, ("a", "mystery"): 1})
    rows = {(queue, state): count for queue, state, count in jobs_by_queue_and_state(census)}
    assert rows[("gone", "failed")] == 2 and rows[("gone", "activated")] == 0
    assert rows[("a", "mystery")] == 1


def test_an_empty_census_says_nothing() -> None:
    assert jobs_by_queue_and_state(JobCensus()) == []
    assert oldest_activated_ages(JobCensus(), NOW) == []


def test_the_oldest_activated_job_s_age_per_queue_is_0_without_one() -> None:
    census = JobCensus(queues=frozenset({"a", "b", "c"}),
                       oldest_activated={"a": NOW - timedelta(seconds=90), "c": NOW + timedelta(seconds=5)})
    assert oldest_activated_ages(census, NOW) == [("a", 90.0), ("b", 0.0), ("c", 0.0)]


def _event(state: JobState, code: int = 0, queue: str = "a") -> JobEvent:
    return JobEvent(job_id=1, attempt=1, state=state, previous_state=JobState.RUNNING, time=NOW, error_code=code,
                    reason="", queue=queue, task_id=0)


def test_failed_attempts_are_counted_by_queue_and_error_code() -> None:
    events = [_event(JobState.FAILED, 1305), _event(JobState.ACTIVATED), _event(JobState.FAILED, 1305),
              _event(JobState.FAILED, 100, "b"), _event(JobState.CANCELLED, 110), _event(JobState.FINISHED)]
    assert failed_attempts(events) == {("a", 1305): 2, ("b", 100): 1}


def test_every_task_state_is_there_and_0_when_empty() -> None:
    rows = dict(tasks_by_state({"running": 2, "done": 5, "mystery": 1}))
    assert set(rows) == {state.value for state in TaskState} | {"mystery"}
    assert rows["running"] == 2 and rows["done"] == 5 and rows["broken"] == 0


@pytest.mark.parametrize(("error", "grant", "reason"), [
    (oauth.invalid_client("wrong secret"), oauth.CLIENT_CREDENTIALS, "client"),
    (OAuthError("unauthorized_client", "not this grant"), oauth.REFRESH_TOKEN, "client"),
    (oauth.invalid_grant("spent"), oauth.REFRESH_TOKEN, "refresh_token"),
    (oauth.invalid_grant("unknown device code"), oauth.DEVICE_CODE, "device_code"),
    (OAuthError("expired_token", "start again"), oauth.DEVICE_CODE, "device_code"),
    (OAuthError("access_denied", "the user denied"), oauth.DEVICE_CODE, "device_code"),
    (OAuthError("authorization_pending", "waiting"), oauth.DEVICE_CODE, None),
    (OAuthError("slow_down", "too fast"), oauth.DEVICE_CODE, "throttled"),
    (oauth.too_many_requests("wait", 30), "", "throttled"),
    (oauth.invalid_request("grant_type is missing"), "", None),
    (OAuthError("invalid_token", "expired", 401), "", "access_token"),
])
def test_refused_sign_ins_are_counted_by_reason(error: OAuthError, grant: str, reason: str | None) -> None:
    assert refusal_reason(error, grant) == reason
