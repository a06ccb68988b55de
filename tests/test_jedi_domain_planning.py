"""The generator's rules without a database: when a task is planned, pending (no queue fits),
throttled (too many jobs queued), scouts first, at most so many jobs; and the jobs made from
its chunks (queues, fair share, serials and batches, specs from the templates)."""

from __future__ import annotations

from datetime import timedelta

from jedi_svc.domain import brokerage, generation, planning
from jedi_svc.domain.chunks import job_groups
from jedi_svc.domain.jobs import request_id
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import KEEP
from tests.jedi_domain_support import AT, make_chunk, make_file, make_queue, make_task

S = TaskState
LIMITS = planning.Limits(pending_retry_seconds=60)


# -- which tasks, and what becomes of them ----------------------------------------------------


def test_a_pending_task_waits_until_its_time_and_the_others_are_planned_when_they_generate() -> None:
    assert not planning.may_plan(S.PENDING, AT + timedelta(seconds=1), AT)
    assert planning.may_plan(S.PENDING, AT, AT) and planning.may_plan(S.PENDING, None, AT)
    assert all(planning.may_plan(s, None, AT) for s in (S.READY, S.SCOUTED, S.RUNNING, S.THROTTLED))
    assert not any(planning.may_plan(s, None, AT) for s in (S.SCOUTING, S.PAUSED, S.EXHAUSTED, S.DONE))
    assert planning.needs_ready_chunks(S.RUNNING)
    assert not planning.needs_ready_chunks(S.PENDING) and not planning.needs_ready_chunks(S.THROTTLED)


def test_a_pending_task_with_nothing_left_goes_back_to_its_state() -> None:
    task = make_task(state=S.PENDING, resume_state="running", wait_until=AT)
    plan = planning.plan(task, [], 0, [make_queue("q")], LIMITS, AT)
    assert plan.change is not None and plan.change.state == S.RUNNING
    assert plan.change.reason == "nothing left to broker"
    assert plan.change.resume_state == "" and plan.change.wait_until is None and not plan.groups
    assert planning.plan(make_task(), [], 0, [make_queue("q")], LIMITS, AT) == planning.Plan()


def test_no_queue_fits_makes_the_task_pending_with_the_reason_and_a_time_to_try_again() -> None:
    ready = [make_chunk(1)]
    queues = [make_queue("small", max_memory_mb=1000)]
    plan = planning.plan(make_task(state=S.RUNNING), ready, 0, queues, LIMITS, AT)
    assert plan.change is not None and plan.change.state == S.PENDING
    assert plan.pending_reason == plan.change.reason == (
        "no queue fits: small: takes at most 1000 MB memory, the task needs 2000")
    assert plan.change.resume_state == "running" and plan.change.wait_until == AT + timedelta(seconds=60)
    assert not plan.groups
    # Already pending for the same reason: only the time to try again moves (no history line).
    pending = make_task(state=S.PENDING, state_reason=plan.pending_reason, resume_state="running")
    again = planning.plan(pending, ready, 0, queues, LIMITS, AT)
    assert again.change is not None and again.change.state is None and again.change.reason is None
    assert again.change.resume_state is KEEP and again.change.wait_until == AT + timedelta(seconds=60)
    # Pending for another reason: the new one is recorded, the state stays.
    other = planning.plan(make_task(state=S.PENDING, state_reason="x"), ready, 0, queues, LIMITS, AT)
    assert other.change is not None and other.change.state == S.PENDING
    assert other.change.reason == plan.pending_reason and other.change.resume_state is KEEP


def test_max_queued_throttles_a_task_until_half_of_its_queued_jobs_started() -> None:
    ready = [make_chunk(i) for i in range(1, 6)]
    queues = [make_queue("q")]
    limits = planning.Limits(60, max_jobs=0, max_queued=10)
    throttled = planning.plan(make_task(state=S.RUNNING), ready, 10, queues, limits, AT)
    assert throttled.change is not None and throttled.change.state == S.THROTTLED
    assert throttled.change.resume_state == "running"
    assert throttled.change.reason == "10 job(s) queued, at most 10 per task: the others wait until some start"
    # Throttled: nothing until at most half are still queued, then up to the limit.
    assert planning.plan(make_task(state=S.THROTTLED), ready, 6, queues, limits, AT) == planning.Plan()
    resumed = planning.plan(make_task(state=S.THROTTLED, resume_state="running"), ready, 5, queues, limits, AT)
    assert len(resumed.groups) == 5 and resumed.change is None
    # Below the limit: only as many jobs as fit under it.
    assert len(planning.plan(make_task(), ready, 8, queues, limits, AT).groups) == 2
    # No limit: a throttled task (throttled when there was one) waits for a resume.
    assert planning.plan(make_task(state=S.THROTTLED), ready, 0, queues, LIMITS, AT) == planning.Plan()


def test_scouts_come_first_and_only_from_chunks_never_run() -> None:
    ready = [make_chunk(1, attempts=1), make_chunk(2), make_chunk(3), make_chunk(4)]
    task = make_task(scouted=False, scout_jobs=2)
    plan = planning.plan(task, ready, 0, [make_queue("q")], LIMITS, AT)
    assert plan.scouting and [[c.content_id for c in g] for g in plan.groups] == [[2], [3]]
    only_retries = planning.plan(task, [make_chunk(1, attempts=1)], 0, [make_queue("q")], LIMITS, AT)
    assert only_retries == planning.Plan()
    scouted = planning.plan(make_task(scout_jobs=2), ready, 0, [make_queue("q")], LIMITS, AT)
    assert not scouted.scouting and len(scouted.groups) == 4


def test_max_jobs_takes_the_first_groups() -> None:
    ready = [make_chunk(i) for i in range(1, 8)]
    plan = planning.plan(make_task(), ready, 0, [make_queue("q")], planning.Limits(60, max_jobs=3), AT)
    assert [g[0].content_id for g in plan.groups] == [1, 2, 3]


def test_chunks_of_the_first_split_stay_together_and_retried_ones_run_alone() -> None:
    ready = [make_chunk(1, split_group=0), make_chunk(2, split_group=1, attempts=1), make_chunk(3, split_group=0),
             make_chunk(4, split_group=1), make_chunk(5, split_group=0, attempts=2)]
    assert [[c.content_id for c in g] for g in job_groups(ready)] == [[1, 3], [4], [2], [5]]


# -- the jobs made ------------------------------------------------------------------------------


def test_jobs_get_serials_batches_fair_share_priorities_and_the_task_runs() -> None:
    task = make_task(next_serial=11, next_batch=4, priority=10)
    groups = [[make_chunk(i)] for i in range(1, 6)]
    files = {i: make_file(i) for i in range(1, 6)}
    made = generation.generate(task, groups, files, [make_queue("q", storage_element="se-a")], 197,
                               scouting=False, batch_size=2, jobs_per_point=100, at=AT)
    assert [j.serial for j in made.jobs] == [11, 12, 13, 14, 15]
    assert [j.batch for j in made.jobs] == [4, 4, 5, 5, 6] and made.batches == [4, 5, 6]
    # The owner has 197 jobs in flight: a point less per 100, counting these as they are made.
    assert [j.priority for j in made.jobs] == [9, 9, 9, 8, 8]
    assert [j.attempt for j in made.jobs] == [1] * 5
    change = made.change
    assert change.state == S.RUNNING and change.next_serial == 16 and change.next_batch == 7
    assert change.start_time == AT and change.wait_until is None and change.resume_state == ""
    assert change.reason == "generated 5 job(s) (priority 9..8): q x5"
    started = make_task(start_time=AT - timedelta(hours=1))
    again = generation.generate(started, groups[:1], files, [make_queue("q")], 0, scouting=False, batch_size=2,
                                jobs_per_point=100, at=AT)
    assert again.change.start_time is KEEP and again.change.scout_report is KEEP


def test_scouts_are_counted_in_the_report_and_a_pending_task_says_a_queue_was_found() -> None:
    task = make_task(state=S.PENDING, scouted=False, scout_jobs=2)
    made = generation.generate(task, [[make_chunk(1)], [make_chunk(2)]], {1: make_file(1), 2: make_file(2)},
                               [make_queue("q")], 0, scouting=True, batch_size=10, jobs_per_point=100, at=AT)
    assert made.change.state == S.SCOUTING and all(j.scout for j in made.jobs)
    assert made.change.scout_report is not KEEP and made.change.scout_report["jobs"] == 2
    assert made.change.reason == "brokerage found a queue; generated 2 scout job(s) (priority 10): q x2"
    assert made.jobs[0].spec["label"] == "mc23.sim (scout)"


def test_jobs_whose_inputs_no_queue_may_read_wait_and_the_task_goes_pending() -> None:
    only_b = brokerage.ElementAccess("se-b", queues=frozenset({"b"}))
    queues = [make_queue("a", storage_element="se-a", elements=(brokerage.ElementAccess("se-a"),)),
              make_queue("b", storage_element="se-b", elements=(only_b,))]
    files = {1: make_file(1, storage_elements=["se-b"]), 2: make_file(2, storage_elements=["se-a"])}
    groups = [[make_chunk(1)], [make_chunk(2)]]
    # Only b reads se-b: the job of file 1 goes there, whichever queue weighs more.
    queues[1].running = 0
    queues[0].running = 50
    made = generation.generate(make_task(), groups, files, queues, 0, scouting=False, batch_size=10,
                               jobs_per_point=100, at=AT, pending_retry_seconds=60)
    assert [(j.queue, j.spec["files"][0]["storage_element"]) for j in made.jobs] == [("b", "se-b"), ("a", "se-a")]
    # Allowed on a alone, file 1 waits and file 2's job is made.
    alone = [make_queue("a", storage_element="se-a", elements=(brokerage.ElementAccess("se-a"),))]
    made = generation.generate(make_task(), groups, files, alone, 0, scouting=False, batch_size=10,
                               jobs_per_point=100, at=AT, pending_retry_seconds=60)
    assert [j.chunks[0].file_id for j in made.jobs] == [2] and made.change.state == S.RUNNING
    # Nothing readable: no job, the task pending until brokerage tries again, its chunks kept.
    made = generation.generate(make_task(), groups[:1], files, alone, 0, scouting=False, batch_size=10,
                               jobs_per_point=100, at=AT, pending_retry_seconds=60)
    assert made.jobs == [] and made.change.state == S.PENDING and not made.abandons_ready_chunks
    assert made.change.wait_until == AT + timedelta(seconds=60) and made.change.resume_state == "ready"
    assert made.change.reason == "no candidate queue may read user.alice:in._000001 (on se-b) for VO atlas: asked a"


def test_a_job_spec_reads_inputs_from_the_queue_storage_element_and_names_its_output() -> None:
    task = make_task(params={"output_dataset": "out", "output_file_pattern": "{dataset}.{serial}.{attempt}",
                             "transformation": ["run", "${IN}", "-o", "${OUT}", "-n", "${MAX_EVENTS}"],
                             "environment": {"A": "1"}})
    files = {1: make_file(1, storage_elements=["se-b", "se-a"], events=10),
             2: make_file(2, storage_elements=["se-c"], events=20)}
    group = [make_chunk(1, attempts=1), make_chunk(2, file_id=2)]
    queue = make_queue("q", storage_element="se-a")
    spec = generation.job_spec(task, group, files, queue, 5, 42, 2, generation.JobTemplates.of(task, False))
    assert spec["command"] == ["run", "in._000001", "in._000002", "-o", "out.000042.2", "-n", "30"]
    assert [(f["lfn"], f["kind"], f.get("storage_element")) for f in spec["files"]] == [
        ("in._000001", "input", "se-a"), ("in._000002", "input", "se-c"),
        ("out.000042.2", "output", None)]
    assert spec["environment"] == {"A": "1", "PANDA_TASK_ID": "7", "PANDA_JOB_SERIAL": "42"}
    assert spec["resources"] == {"cores": 1, "memory_mb": 2000, "walltime_seconds": 3600, "disk_mb": 0}
    assert (spec["queue"], spec["priority"], spec["max_attempts"]) == ("q", 5, 1)
    events = make_task(split_kind="events", params=task.params)
    chunks = [make_chunk(1, first_event=5, n_events=3), make_chunk(2, file_id=2)]
    by_events = generation.job_spec(events, chunks, files, queue, 5, 1, 1, generation.JobTemplates.of(events, False))
    assert by_events["command"][-1] == "23"
    unknown = {1: make_file(1), 2: make_file(2, events=5)}
    assert generation.job_spec(task, group, unknown, queue, 5, 1, 1, generation.JobTemplates.of(task, False))[
        "command"][-1] == "-1"


def test_a_batch_request_id_is_made_of_the_token_the_task_and_the_batch() -> None:
    assert request_id("0123456789abcdef0123456789abcdef", 7, 3) == "jedi-0123456789abcdef0123-7-3"
