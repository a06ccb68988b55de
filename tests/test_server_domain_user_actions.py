"""Kill and reassign, job by job, with no database: who may, and what each does in each state."""

from __future__ import annotations

import pytest

from panda_runtime.service.errors import FailedPrecondition, NotFound, PermissionDenied
from panda_runtime.service.principals import EVERYTHING, Scope
from server_svc.domain.states import FINAL_STATES, PILOT_STATES, QUEUED_STATES, JobState
from server_svc.domain.user_actions import CommandKind, kill, reassign
from tests.server_domain_support import NOW, make_job

ALICE = Scope(owner="alice")


@pytest.mark.parametrize("state", sorted(QUEUED_STATES))
def test_a_job_waiting_for_a_pilot_is_cancelled_at_once(state: JobState) -> None:
    job = make_job(state=state, pilot_id="")
    decision = kill(7, job, ALICE, "not needed", NOW)
    assert (decision.result.state, decision.result.error, decision.command) == (JobState.CANCELLED, None, None)
    assert decision.change is not None
    assert [(e.previous_state, e.state, e.reason) for e in decision.change.events] == [
        (state, JobState.CANCELLED, "not needed")
    ]


@pytest.mark.parametrize("state", sorted(PILOT_STATES))
def test_a_job_a_pilot_holds_gets_a_kill_command_once(state: JobState) -> None:
    job = make_job(state=state, pilot_id="pilot-1", attempt=2)
    first = kill(7, job, ALICE, "stop", NOW)
    assert job.kill_requested and job.state is state and job.update_time == NOW
    assert first.change is not None and first.change.events == []
    assert first.command is not None
    assert (first.command.kind, first.command.pilot_id, first.command.attempt) == (CommandKind.KILL, "pilot-1", 2)
    assert first.result.pilot_command == ("pilot-1", 2)
    # Asked again: no second command, but the pilot is still told (delivery is repeated).
    again = kill(7, job, ALICE, "stop", NOW)
    assert (again.change, again.command, again.result.pilot_command) == (None, None, ("pilot-1", 2))


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_a_job_that_ended_cannot_be_killed(state: JobState) -> None:
    decision = kill(7, make_job(state=state), ALICE, "", NOW)
    assert isinstance(decision.result.error, FailedPrecondition)
    assert decision.result.error.message == f"job 7 is already {state.value}"
    assert decision.change is None


def test_only_the_owner_or_a_wider_scope_may_act_on_a_job() -> None:
    job = make_job(owner="bob", vo="atlas", state=JobState.ACTIVATED)
    denied = kill(7, job, ALICE, "", NOW)
    assert isinstance(denied.result.error, PermissionDenied) and "belongs to bob" in denied.result.error.message
    assert job.state is JobState.ACTIVATED
    assert kill(7, job, Scope(owner="carol", vos=frozenset({"atlas"})), "", NOW).result.error is None
    assert kill(8, None, EVERYTHING, "", NOW).result.error.__class__ is NotFound
    moved = reassign(7, job, ALICE, "elsewhere", NOW)
    assert isinstance(moved.result.error, PermissionDenied) and job.queue == "local"
    assert reassign(8, None, EVERYTHING, "elsewhere", NOW).result.error.__class__ is NotFound


def test_a_job_not_yet_sent_moves_to_the_new_queue_activated() -> None:
    job = make_job(state=JobState.THROTTLED, queue="old", pilot_id="")
    decision = reassign(7, job, ALICE, "new", NOW)
    assert (decision.result.state, decision.result.error, job.queue) == (JobState.ACTIVATED, None, "new")
    assert decision.change is not None
    assert [(e.state, e.queue, e.reason) for e in decision.change.events] == [
        (JobState.ACTIVATED, "new", "reassigned from old to new")
    ]


@pytest.mark.parametrize("state", sorted(PILOT_STATES | FINAL_STATES))
def test_a_job_sent_to_a_pilot_cannot_be_reassigned(state: JobState) -> None:
    job = make_job(state=state, queue="old")
    decision = reassign(7, job, ALICE, "new", NOW)
    assert isinstance(decision.result.error, FailedPrecondition)
    assert "only jobs not yet sent to a pilot can be reassigned" in decision.result.error.message
    assert (job.queue, decision.change) == ("old", None)
