"""The job state machine, with no server."""

from __future__ import annotations

import itertools

import grpc
import pytest

from panda_runtime.service.errors import FailedPrecondition
from server_svc.domain.states import (
    ALLOWED,
    FINAL_STATES,
    JobState,
    can_transition,
    check_transition,
    is_heartbeat,
)


def test_happy_path_is_allowed() -> None:
    path = [JobState.ACTIVATED, JobState.SENT, JobState.STARTING, JobState.RUNNING, JobState.HOLDING,
            JobState.TRANSFERRING, JobState.FINISHED]
    for current, new in itertools.pairwise(path):
        assert can_transition(current, new), (current, new)


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_final_states_never_change(final: JobState) -> None:
    assert not ALLOWED[final]
    for state in JobState:
        assert not can_transition(final, state)


@pytest.mark.parametrize("state", [s for s in JobState if s not in FINAL_STATES])
def test_every_live_state_can_be_cancelled_or_closed(state: JobState) -> None:
    assert can_transition(state, JobState.CANCELLED)
    assert can_transition(state, JobState.CLOSED)


def test_a_job_cannot_skip_the_pilot() -> None:
    assert not can_transition(JobState.ACTIVATED, JobState.RUNNING)
    assert not can_transition(JobState.ACTIVATED, JobState.FINISHED)
    assert not can_transition(JobState.RUNNING, JobState.SENT)
    assert not can_transition(JobState.RUNNING, JobState.ACTIVATED)


def test_refusal_names_the_current_state() -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check_transition(7, JobState.FINISHED, JobState.RUNNING)
    assert raised.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert "job 7 is finished" in raised.value.message


def test_heartbeat_is_the_same_state_held_by_a_pilot() -> None:
    assert is_heartbeat(JobState.RUNNING, JobState.RUNNING)
    assert not is_heartbeat(JobState.ACTIVATED, JobState.ACTIVATED)
    assert not is_heartbeat(JobState.RUNNING, JobState.FINISHED)
