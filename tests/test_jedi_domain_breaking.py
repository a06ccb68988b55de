"""What breaks a task alone, without a database: a stored split rule no file can be cut by, a job
the server would refuse, and what each of the server's answers means for the task."""

from __future__ import annotations

import math

import pytest

from jedi_svc.domain import breaking, generation, refining
from jedi_svc.domain.splitting import InputFile, SplitRule
from jedi_svc.domain.states import FINAL_STATES, TaskState, can_transition
from tests.jedi_domain_support import AT, make_chunk, make_file, make_queue, make_task

S = TaskState


@pytest.mark.parametrize("state", sorted(set(S) - FINAL_STATES))
def test_any_live_task_can_be_broken(state: TaskState) -> None:
    assert can_transition(state, S.BROKEN)
    change = breaking.broken(state, "refining", "gb_per_job must be a finite number, not nan")
    assert change is not None and change.state == S.BROKEN
    assert change.reason == "refining: gb_per_job must be a finite number, not nan"


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_an_ended_task_stays_as_it_ended(state: TaskState) -> None:
    assert breaking.broken(state, "x", "y") is None


def test_a_long_reason_is_cut() -> None:
    change = breaking.broken(S.RUNNING, "submitting batch 1", "x" * 5000)
    assert change is not None and change.reason is not None
    assert len(change.reason) == breaking.MAX_REASON_LENGTH and change.reason.endswith("...")


@pytest.mark.parametrize(("code", "refused", "away"), [
    ("INVALID_ARGUMENT", True, False), ("ALREADY_EXISTS", True, False), ("NOT_FOUND", True, False),
    ("UNAVAILABLE", False, True), ("DEADLINE_EXCEEDED", False, True), ("UNAUTHENTICATED", False, True),
    ("INTERNAL", False, False), ("UNKNOWN", False, False),
])
def test_what_the_servers_answers_mean(code: str, refused: bool, away: bool) -> None:
    assert (breaking.refused_by_server(code), breaking.server_away(code)) == (refused, away)


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_a_split_rule_stored_before_the_rules_breaks_the_task(value: float) -> None:
    fed = refining.feed(["in"], [("in", InputFile(1, "a", 10, 0))], SplitRule("size", value))
    assert fed.chunks == [] and fed.change.state == S.BROKEN
    assert "split rule cannot be used" in str(fed.change.reason)


def test_a_job_the_server_would_refuse_is_never_made() -> None:
    task = make_task()
    files = {1: make_file(1), 2: make_file(2, lfn="a b.root")}
    made = generation.generate(task, [[make_chunk(1)], [make_chunk(2)]], files, [make_queue("q")], 0, scouting=False,
                               batch_size=10, jobs_per_point=100, at=AT)
    assert made.jobs == [] and made.change.state == S.BROKEN
    assert "job 2 would be refused by the server" in str(made.change.reason)
    assert "logical file name 'a b.root'" in str(made.change.reason)


def test_jobs_the_server_takes_are_made() -> None:
    made = generation.generate(make_task(), [[make_chunk(1)]], {1: make_file(1)}, [make_queue("q")], 0,
                               scouting=False, batch_size=10, jobs_per_point=100, at=AT)
    assert len(made.jobs) == 1 and made.change.state == S.RUNNING
