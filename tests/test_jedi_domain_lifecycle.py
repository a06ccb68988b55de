"""A task's life without a database: refined (inputs checked and cut into chunks), retried,
scouted, exhausted, ended; and what users' commands do to it and ask of the server."""

from __future__ import annotations

import pytest

from jedi_svc.domain import commands, postprocessing, refining
from jedi_svc.domain.splitting import InputFile, SplitRule
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import KEEP, TaskChange
from panda_runtime.service.errors import FailedPrecondition, InvalidArgument
from tests.jedi_domain_support import make_job, make_job_in_flight, make_queue, make_task

S = TaskState


# -- refining -------------------------------------------------------------------------------------


def test_refining_needs_every_input_dataset_to_exist_and_hold_files() -> None:
    assert refining.refine(["a", "b"], {"a": 3}) == TaskChange(S.BROKEN, "input dataset b not found")
    assert refining.refine(["a", "b"], {"a": 3, "b": 0}).reason == "input dataset b has no files"
    defined = refining.refine(["a", "b"], {"a": 3, "b": 4})
    assert defined.state == S.DEFINED and defined.reason == "refined: 7 input file(s) in 2 dataset(s)"


def test_feeding_cuts_the_files_in_the_order_of_their_datasets_or_breaks_the_task() -> None:
    files = [("b", InputFile(1, "b1", 10, 0)), ("a", InputFile(3, "a2", 10, 0)), ("a", InputFile(2, "a1", 10, 0))]
    fed = refining.feed(["a", "b"], files, SplitRule("files", 2))
    assert [(c.file_id, c.group) for c in fed.chunks] == [(2, 0), (3, 0), (1, 1)]
    assert fed.change.state == S.READY
    assert fed.change.reason == "3 file(s) split into 3 chunk(s) for 2 job(s), 2 file(s) per job"
    broken = refining.feed(["a"], [("a", InputFile(1, "a1", 10, 0))], SplitRule("events", 100))
    assert broken.chunks == [] and broken.change.state == S.BROKEN and "events splitting" in str(broken.change.reason)


def test_a_retried_task_is_ready_with_its_failure_counters_reset() -> None:
    change = refining.retry(4)
    assert change.state == S.READY and change.reason == "retry: 4 chunk(s) to run again"
    assert (change.jobs_finished, change.jobs_failed, change.wait_until) == (0, 0, None)


# -- post-processing ----------------------------------------------------------------------------


def test_scouting_ends_when_every_scout_ended_and_sets_the_other_jobs_requests() -> None:
    task = make_task(state=S.SCOUTING, scouted=False, scout_jobs=3)
    running = [make_job(1, scout=True, state="finished"), make_job(2, scout=True, state="running")]
    assert postprocessing.end_scouting(task, running) == postprocessing.Decision()
    assert postprocessing.end_scouting(task, []) == postprocessing.Decision()
    ended = [make_job(1, scout=True, state="finished", max_rss_mb=1000, walltime_used=600, cpu_seconds=500),
             make_job(2, scout=True, state="failed"),
             make_job(3, scout=True, state="finished", max_rss_mb=1200, walltime_used=900, cpu_seconds=700)]
    decision = postprocessing.postprocess(task, {"running": 3, "ready": 7}, 0, ended)
    change = decision.change
    assert change is not None and change.state == S.SCOUTED and decision.cancel == ()
    assert (change.scouted, change.memory_mb, change.walltime_seconds) == (True, 1800, 1800)
    assert change.scout_report is not KEEP
    assert (change.scout_report["jobs"], change.scout_report["succeeded"], change.scout_report["failed"]) == (3, 2, 1)
    assert change.scout_report["applied"] and change.scout_report["memory_mb"] == 1200
    assert str(change.reason).startswith("scouted: 2 of 3 scout(s) succeeded; measured 1200 MB peak memory")


def test_no_scout_succeeding_breaks_the_task_and_cancels_what_did_not_run() -> None:
    task = make_task(state=S.SCOUTING, scouted=False, scout_jobs=2)
    failed = [make_job(1, scout=True, state="failed"),
              make_job(2, scout=True, state="failed", error_code=1201, error_diag="oom")]
    decision = postprocessing.end_scouting(task, failed)
    assert decision.change is not None and decision.change.state == S.BROKEN and decision.cancel == ("ready",)
    assert decision.change.reason == "no scout succeeded: 2 scout job(s) failed; last: error 1201: oom"
    cancelled = postprocessing.end_scouting(task, [make_job(1, scout=True, state="cancelled")])
    assert cancelled.change is not None and str(cancelled.change.reason).endswith("last: cancelled")


def test_a_task_is_exhausted_after_enough_ended_jobs_with_too_many_failures() -> None:
    def exhausted(finished: int, failed: int, limit: float = 0.5) -> bool:
        task = make_task(state=S.RUNNING, jobs_finished=finished, jobs_failed=failed, max_failure_rate=limit)
        return postprocessing.exhaustion(task) is not None

    assert not exhausted(0, postprocessing.FAILURE_RATE_MIN_JOBS - 1)  # too few ended to judge
    assert exhausted(4, 6) and not exhausted(5, 5)  # 60% > 50%; 50% is not above it
    assert exhausted(1, 9, 0.8) and not exhausted(0, 100, 1.0)  # a limit of 1 never exhausts
    change = postprocessing.exhaustion(make_task(jobs_finished=2, jobs_failed=8))
    assert change is not None and change.state == S.EXHAUSTED
    assert change.reason == ("8 of 10 jobs failed (80% > 50%): no new jobs until the task is retried, finished "
                             "or killed")
    decision = postprocessing.postprocess(make_task(state=S.RUNNING, jobs_failed=10), {"ready": 5}, 3)
    assert decision.change is not None and decision.change.state == S.EXHAUSTED


def test_a_task_with_nothing_ready_and_nothing_in_flight_ends_done_finished_or_failed() -> None:
    running = make_task(state=S.RUNNING)
    assert postprocessing.postprocess(running, {"ready": 1, "finished": 3}, 0) == postprocessing.Decision()
    assert postprocessing.postprocess(running, {"finished": 3}, 1) == postprocessing.Decision()
    done = postprocessing.postprocess(running, {"finished": 3}, 0).change
    assert done is not None and done.state == S.DONE and done.reason == "3 chunk(s): 3 finished"
    finished = postprocessing.postprocess(running, {"finished": 2, "failed": 1}, 0).change
    assert finished is not None and finished.state == S.FINISHED
    assert finished.reason == "3 chunk(s): 2 finished, 1 failed"
    failed = postprocessing.end_state({"failed": 2, "cancelled": 1}, 3)
    assert failed.state == S.FAILED and failed.reason == "3 chunk(s): 2 failed, 1 cancelled"
    assert postprocessing.summary({}, 0) == "0 chunk(s): none processed"


def test_finishing_and_aborting_end_once_every_job_ended() -> None:
    finishing = make_task(state=S.FINISHING)
    assert postprocessing.postprocess(finishing, {"ready": 2, "finished": 3}, 1) == postprocessing.Decision()
    decision = postprocessing.postprocess(finishing, {"ready": 2, "finished": 3}, 0)
    assert decision.change is not None and decision.change.state == S.FINISHED and decision.cancel == ("ready",)
    assert decision.change.reason == "finished by request: 5 chunk(s): 3 finished"
    all_done = postprocessing.postprocess(finishing, {"finished": 3}, 0).change
    assert all_done is not None and all_done.state == S.DONE
    aborting = postprocessing.postprocess(make_task(state=S.ABORTING), {"cancelled": 2, "finished": 1}, 0)
    assert aborting.change is not None and aborting.change.state == S.ABORTED
    assert aborting.cancel == ("ready", "running")
    assert aborting.change.reason == "killed; every job ended: 3 chunk(s): 1 finished, 2 cancelled"


@pytest.mark.parametrize("state", [S.REGISTERED, S.DEFINED, S.TORETRY, S.DONE, S.FAILED, S.BROKEN, S.ABORTED])
def test_the_post_processor_leaves_final_tasks_and_those_of_the_refiner_alone(state: TaskState) -> None:
    assert not postprocessing.looks_at(state)
    assert postprocessing.postprocess(make_task(state=state, jobs_failed=100), {}, 0) == postprocessing.Decision()


# -- commands ---------------------------------------------------------------------------------------


def test_kill_aborts_the_task_cancels_what_did_not_run_and_kills_every_job() -> None:
    accepted = commands.accept(make_task(state=S.RUNNING), "kill", reason="wrong input")
    assert (accepted.state, accepted.note, accepted.cancel_ready) == (S.ABORTING, "kill: wrong input", True)
    assert accepted.work == ("kill", {"reason": "wrong input"})
    stop = commands.stop("kill", {"reason": "task killed"})
    assert stop == commands.Stop((), "task killed")
    assert commands.stopped_note("kill", 3) == "kill sent for 3 job(s)" and commands.stopped_note("kill", 0) == ""


def test_finish_cancels_only_the_jobs_not_yet_started() -> None:
    accepted = commands.accept(make_task(state=S.RUNNING), "finish")
    assert accepted.state == S.FINISHING and not accepted.cancel_ready
    assert accepted.work == ("finish", {"reason": "task finished by request"})
    assert commands.stop("finish", {}) == commands.Stop(("activated",), "task finished")
    assert commands.stopped_note("finish", 2) == "cancelled 2 job(s) not yet started"
    assert commands.stop("priority", {}) is None


def test_pause_remembers_the_state_to_resume_and_resume_goes_back_to_it() -> None:
    paused = commands.accept(make_task(state=S.RUNNING), "pause")
    assert paused.state == S.PAUSED and paused.change.resume_state == "running" and paused.work is None
    pending = commands.accept(make_task(state=S.PENDING, resume_state="scouted"), "pause")
    assert pending.change.resume_state == "scouted"
    resumed = commands.accept(make_task(state=S.PAUSED, resume_state="scouted"), "resume")
    assert resumed.state == S.SCOUTED and resumed.change.resume_state == "" and resumed.change.wait_until is None
    assert commands.accept(make_task(state=S.PAUSED), "resume").state == S.READY
    retried = commands.accept(make_task(state=S.FAILED), "retry")
    assert retried.state == S.TORETRY and retried.change.end_time is None


def test_reassign_sets_the_queues_and_brokers_a_pending_task_again() -> None:
    task = make_task(state=S.PENDING, resume_state="running", excluded_queues=["b", "c"])
    accepted = commands.accept(task, "reassign", queues=["b", "a", "b"], reason="site down")
    assert accepted.state == S.RUNNING and accepted.note == "reassign to b, a: site down"
    assert accepted.change.queues == ["b", "a"] and accepted.change.excluded_queues == ["c"]
    assert accepted.change.wait_until is None and accepted.work == ("reassign", {"queues": ["b", "a"]})
    assert commands.accept(make_task(state=S.RUNNING), "reassign", queues=["a"]).state == S.RUNNING
    with pytest.raises(InvalidArgument, match="at least one queue"):
        commands.accept(make_task(), "reassign", queues=[])


def test_priority_is_noted_and_a_command_the_state_does_not_take_is_refused() -> None:
    accepted = commands.accept(make_task(state=S.RUNNING, priority=10), "priority", priority=50)
    assert accepted.state == S.RUNNING and accepted.note == "priority 10 -> 50"
    assert accepted.change.priority == 50 and accepted.work == ("priority", {"priority": 50})
    with pytest.raises(FailedPrecondition, match="task 7 is done: kill is accepted only"):
        commands.accept(make_task(state=S.DONE), "kill")


def test_reassigned_jobs_are_those_elsewhere_brokered_over_the_named_queues() -> None:
    jobs = [make_job_in_flight(1, "old", inputs=[(100, "se-b")]), make_job_in_flight(2, "a"),
            make_job_in_flight(3, "old")]
    movable = commands.movable(jobs, ["a", "b"])
    assert [j.job_id for j in movable] == [1, 3]
    queues = [make_queue("a", storage_element="se-a"), make_queue("b", storage_element="se-b"),
              make_queue("old")]
    plan = commands.reassignment(movable, queues, ["a", "b"])
    assert plan.moves == {"b": [1], "a": [3]} and plan.note == ""
    none_fits = commands.reassignment(movable, [make_queue("a", max_memory_mb=100)], ["a", "b"])
    assert none_fits.moves == {} and none_fits.note == (
        "reassign: none of the 2 queued job(s) moved: a: takes at most 100 MB memory, the task needs 2000; "
        "b: no such queue")
    assert commands.reassigned_note([(1, "b"), (3, "a")], ["b", "a"]) == "reassigned 2 queued job(s): a x1, b x1"
