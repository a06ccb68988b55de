"""Handing jobs to pilots, with no database: releases, acknowledgements, offers and claims."""

from __future__ import annotations

import pytest

from panda_runtime.service.errors import FailedPrecondition
from server_svc.domain.dispatch import Claim, Offer, acknowledgement, release
from server_svc.domain.pilot_updates import UpdateOutcome
from server_svc.domain.states import FINAL_STATES, JobState
from tests.server_domain_support import NOW, make_job


def test_a_job_sent_to_a_pilot_that_never_got_it_goes_back_same_attempt() -> None:
    job = make_job(state=JobState.SENT, attempt=2)
    change = release(job, "pilot left before starting the job", NOW)
    assert change is not None and change.reactivated
    assert (job.state, job.attempt, job.pilot_id, job.node) == (JobState.ACTIVATED, 2, "", "")
    assert [(e.previous_state, e.state, e.reason) for e in change.events] == [
        (JobState.SENT, JobState.ACTIVATED, "pilot left before starting the job")
    ]


@pytest.mark.parametrize("state", [JobState.STARTING, JobState.RUNNING, JobState.FINISHED, JobState.ACTIVATED])
def test_a_job_the_pilot_reported_on_is_not_released(state: JobState) -> None:
    job = make_job(state=state)
    assert release(job, "pilot stream closed", NOW) is None
    assert (job.state, job.pilot_id) == (state, "pilot-1")


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_ends_of_attempts_are_acknowledged(state: JobState) -> None:
    ack = acknowledgement(5, UpdateOutcome(7, 2, state))
    assert ack is not None and (ack.seq, ack.job_id, ack.attempt, ack.state, ack.error) == (5, 7, 2, state, None)


def test_progress_is_not_acknowledged_but_refusals_are() -> None:
    assert acknowledgement(5, UpdateOutcome(7, 1, JobState.RUNNING)) is None
    refused = FailedPrecondition("stale")
    ack = acknowledgement(5, UpdateOutcome(7, 1, JobState.RUNNING, refused))
    assert ack is not None and ack.error is refused
    assert acknowledgement(5, UpdateOutcome(9, 1, None, refused)) is not None


def test_a_new_offer_replaces_only_what_it_states() -> None:
    assert Offer(8, 16000, 3600).updated_by(Offer(4, 0, 0)) == Offer(4, 16000, 3600)
    assert Offer(8, 16000, 3600).updated_by(Offer(0, 0, 60)) == Offer(8, 16000, 60)


def test_a_claim_has_a_slot_per_job_each_pilot_takes_in_their_order() -> None:
    claim = Claim("local", Offer(1, 0, 0), [("p1", "n1", 2), ("p2", "n2", 0), ("p3", "n3", 1)])
    assert claim.wanted == 3
    assert list(claim.slots()) == [("p1", "n1"), ("p1", "n1"), ("p3", "n3")]
