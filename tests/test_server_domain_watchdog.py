"""The watchdogs' rules, with no database: which jobs each ends, how, and the grace after a
restart."""

from __future__ import annotations

from datetime import timedelta

import pytest

from server_svc.domain import error_codes
from server_svc.domain.states import PILOT_STATES, JobState
from server_svc.domain.watchdog import Clock, WatchdogLimits, WatchdogRule, apply_rule, rules_in_force
from tests.server_domain_support import NOW, make_job

LIMITS = WatchdogLimits(sent_timeout=1800, heartbeat_timeout=7200, holding_timeout=3 * 86400, kill_grace=600)
ALL = {rule.name: rule for rule in rules_in_force(LIMITS, watched_for=float("inf"))}


def test_the_rules_in_the_order_they_look() -> None:
    assert [(r.name, r.code, r.retries) for r in ALL.values()] == [
        ("sent", error_codes.SENT_NO_REPLY, True),
        ("heartbeat", error_codes.LOST_HEARTBEAT, True),
        ("holding", error_codes.HOLDING_TIMEOUT, True),
        ("kill", error_codes.KILL_NOT_CONFIRMED, False),
    ]
    assert ALL["sent"].diagnosis == "sent, no reply from the pilot for 1800 s"
    assert ALL["heartbeat"].diagnosis == "lost heartbeat (none for 7200 s)"
    assert ALL["holding"].diagnosis == "holding for more than 259200 s"
    assert ALL["kill"].diagnosis == "killed: the pilot did not confirm within the grace period"


def test_what_each_rule_watches_and_from_when() -> None:
    assert (ALL["sent"].states, ALL["sent"].clock) == ({JobState.SENT}, Clock.STATE_ENTERED)
    assert ALL["heartbeat"].states == {JobState.STARTING, JobState.RUNNING, JobState.TRANSFERRING}
    assert ALL["heartbeat"].clock is Clock.LAST_HEARTBEAT
    assert (ALL["holding"].states, ALL["holding"].clock) == ({JobState.HOLDING}, Clock.STATE_ENTERED)
    assert (ALL["kill"].states, ALL["kill"].clock) == (PILOT_STATES, Clock.KILL_ASKED)


@pytest.mark.parametrize(("state", "age", "overdue"), [
    (JobState.SENT, 1801, True), (JobState.SENT, 1799, False), (JobState.RUNNING, 10**6, False),
])
def test_a_rule_holds_a_timeout_against_a_job_in_its_states(state: JobState, age: int, overdue: bool) -> None:
    rule = ALL["sent"]
    assert rule.cutoff(NOW) == NOW - timedelta(seconds=1800)
    assert rule.is_overdue(state, NOW - timedelta(seconds=age), NOW) is overdue


def test_after_a_restart_silence_counts_only_once_a_whole_timeout_has_passed() -> None:
    # While the server was down no pilot could reach it.
    assert [r.name for r in rules_in_force(LIMITS, watched_for=60)] == ["holding", "kill"]
    assert [r.name for r in rules_in_force(LIMITS, watched_for=1800)] == ["sent", "holding", "kill"]
    assert [r.name for r in rules_in_force(LIMITS, watched_for=7200)] == ["sent", "heartbeat", "holding", "kill"]


def test_a_lost_heartbeat_fails_the_attempt_and_the_retry_policy_applies() -> None:
    job = make_job(attempt=1, max_attempts=2)
    change = apply_rule(job, ALL["heartbeat"], NOW)
    assert change.reactivated and (job.state, job.attempt) == (JobState.ACTIVATED, 2)
    assert (job.error_code, job.error_diag) == (100, "lost heartbeat (none for 7200 s)")
    assert [(e.state, e.error_code) for e in change.events] == [(JobState.FAILED, 100), (JobState.ACTIVATED, 0)]


def test_a_kill_nobody_confirmed_cancels_the_job_without_a_retry() -> None:
    job = make_job(attempt=1, max_attempts=3, kill_requested=True)
    change = apply_rule(job, ALL["kill"], NOW)
    assert not change.reactivated
    assert (job.state, job.attempt, job.error_code, job.end_time) == (JobState.CANCELLED, 1, 110, NOW)
    assert [(e.state, e.reason) for e in change.events] == [(JobState.CANCELLED, ALL["kill"].diagnosis)]


def test_a_rule_that_does_not_retry_cancels_even_with_attempts_left() -> None:
    rule = WatchdogRule("custom", frozenset({JobState.RUNNING}), Clock.STATE_ENTERED, 1, 999, "why", retries=False,
                        holds_silence=False)
    job = make_job(attempt=1, max_attempts=3)
    apply_rule(job, rule, NOW)
    assert (job.state, job.error_code, job.error_diag) == (JobState.CANCELLED, 999, "why")


def test_the_heartbeat_rule_spares_a_job_whose_pilot_is_still_heard() -> None:
    rule = ALL["heartbeat"]
    silent_since = NOW - timedelta(seconds=7201)
    assert rule.spares_heard_pilots and rule.is_overdue(JobState.RUNNING, silent_since, NOW)
    # Its heartbeats may be in a round that failed; the pilot still talks on its stream.
    assert not rule.is_overdue(JobState.RUNNING, silent_since, NOW, pilot_heard=NOW - timedelta(seconds=5))
    assert rule.is_overdue(JobState.RUNNING, silent_since, NOW, pilot_heard=silent_since)
    # The other rules hold their timeouts whatever the pilot says.
    assert ALL["sent"].is_overdue(JobState.SENT, NOW - timedelta(seconds=1801), NOW, pilot_heard=NOW)
