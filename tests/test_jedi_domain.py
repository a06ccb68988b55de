"""JEDI's rules without I/O: splitting, templates, brokerage, scouts, fair share, progress,
and which state accepts which command."""

from __future__ import annotations

import pytest

from jedi_svc.domain import brokerage, fairshare, scouts, splitting, states, templates
from jedi_svc.domain.progress import Progress, file_status, final_state
from jedi_svc.domain.states import TaskState
from panda_runtime.service.errors import FailedPrecondition, InvalidArgument
from panda_runtime.service.filtering import parse_filter

S = TaskState


def files(*sizes: int, events: int = 0) -> list[splitting.InputFile]:
    return [splitting.InputFile(i + 1, f"f{i}", size, events) for i, size in enumerate(sizes)]


# -- splitting ---------------------------------------------------------------------------


def test_files_per_job_groups_whole_files_in_order() -> None:
    chunks = splitting.split(files(*[1] * 7), splitting.SplitRule("files", 3))
    assert [c.group for c in chunks] == [0, 0, 0, 1, 1, 1, 2]
    assert all(c.n_events == 0 and c.first_event == 0 for c in chunks)


def test_size_per_job_never_splits_a_file_and_takes_at_least_one() -> None:
    gb = splitting.GIGABYTE
    chunks = splitting.split(files(gb // 2, gb // 2, gb // 2, 3 * gb, gb // 10), splitting.SplitRule("size", 1.0))
    assert [c.group for c in chunks] == [0, 0, 1, 2, 3]


def test_events_per_job_cuts_and_combines_files() -> None:
    inputs = [splitting.InputFile(1, "a", 0, 150), splitting.InputFile(2, "b", 0, 150),
              splitting.InputFile(3, "c", 0, 40)]
    chunks = splitting.split(inputs, splitting.SplitRule("events", 100))
    assert [(c.file_id, c.first_event, c.n_events, c.group) for c in chunks] == [
        (1, 0, 100, 0), (1, 100, 50, 1), (2, 0, 50, 1), (2, 50, 100, 2), (3, 0, 0, 3),
    ]


def test_events_splitting_needs_event_counts() -> None:
    with pytest.raises(splitting.SplitError, match="1 file"):
        splitting.split([splitting.InputFile(1, "a", 10, 0)], splitting.SplitRule("events", 10))


# -- templates ---------------------------------------------------------------------------


def test_transformation_placeholders() -> None:
    values = templates.JobValues(inputs=["a", "b"], output="o", task_id=7, serial=3, attempt=2, skip_events=5,
                                 max_events=10)
    argv = ["run", "${IN}", "--in=${IN_CSV}", "--out=${OUT}", "-s", "${SKIP_EVENTS}", "${MAX_EVENTS}",
            "${FIRST_EVENT}", "t${TASK_ID}.${SERIAL}.${ATTEMPT}", "sh -c 'cat ${IN}'"]
    assert templates.expand_transformation(argv, values) == [
        "run", "a", "b", "--in=a,b", "--out=o", "-s", "5", "10", "6", "t7.3.2", "sh -c 'cat a b'"]
    with pytest.raises(templates.TemplateError, match="INPUT"):
        templates.check_transformation(["x", "${INPUT}"])
    with pytest.raises(templates.TemplateError):
        templates.check_transformation([])


def test_output_pattern_needs_a_serial_and_a_task_or_dataset() -> None:
    assert templates.output_name("{dataset}._{serial}.root.{attempt}", task_id=5, dataset="ds", serial=42,
                                 attempt=1) == "ds._000042.root.1"
    templates.check_output_pattern("out.{task_id}.{serial}")
    for bad, message in [("out.{task_id}", "serial"), ("out.{serial}", "task_id"), ("{dataset}.{serial}.{x}", "x"),
                         ("a/{dataset}.{serial}", "/")]:
        with pytest.raises(templates.TemplateError, match=message):
            templates.check_output_pattern(bad)


# -- brokerage ---------------------------------------------------------------------------

REQUEST = brokerage.JobRequest(cores=1, memory_mb=2000, walltime_seconds=3600, disk_mb=0)


def queue(name: str, **fields: object) -> brokerage.QueueInfo:
    return brokerage.QueueInfo(queue_id=name, status=str(fields.pop("status", "online")), **fields)  # type: ignore[arg-type]


def test_candidates_are_online_allowed_and_big_enough() -> None:
    queues = [queue("ok"), queue("off", status="offline"), queue("brokeroff", status="brokeroff"),
              queue("small", max_memory_mb=1000), queue("short", max_walltime_seconds=600), queue("excluded")]
    found = brokerage.candidates(queues, REQUEST, allowed=[], excluded=["excluded"])
    assert [q.queue_id for q in found.queues] == ["ok"]
    assert "takes at most 1000 MB memory, the task needs 2000" in found.rejected["small"]
    assert found.rejected["off"] == "offline"
    found = brokerage.candidates(queues, REQUEST, allowed=["small", "nowhere"], excluded=[])
    assert found.queues == [] and found.rejected["nowhere"] == "no such queue"
    assert "small: takes at most" in found.reason()


def test_weights_spread_jobs_and_prefer_data_locality() -> None:
    a = queue("a", storage_element="se-a")
    b = queue("b", storage_element="se-b", running=1)
    chosen = brokerage.assign([a, b], [[] for _ in range(30)])
    counts = {q: sum(1 for c in chosen if c.queue_id == q) for q in ("a", "b")}
    # b runs more, so it gets more: weights (running+1)/(queued+10) stay about equal.
    assert counts["b"] > counts["a"] > 0
    local = brokerage.assign([queue("a", storage_element="se-a"), queue("b", storage_element="se-b")],
                             [[(100, ["se-b"])] for _ in range(8)])
    assert all(q.queue_id == "b" for q in local)
    assert brokerage.locality([(100, ["se-a"]), (300, ["se-b", "se-a"])], "se-b") == 0.75
    assert brokerage.locality([(0, ["x"]), (0, ["y"])], "x") == 0.5


def test_jobs_go_only_where_their_inputs_may_be_read() -> None:
    # se-a serves queue a only; se-b every queue, but only VO cms's jobs.
    se_a = brokerage.ElementAccess("se-a", queues=frozenset({"a"}))
    se_b = brokerage.ElementAccess("se-b", vos=frozenset({"cms"}))
    a = queue("a", storage_element="se-a", elements=(se_a, se_b))
    b = queue("b", storage_element="se-b", elements=(se_b,))
    on_a = [[(100, ["se-a"])] for _ in range(6)]
    assert [q.queue_id if q else None for q in brokerage.assign([a, b], on_a, "atlas")] == ["a"] * 6
    on_b = [[(100, ["se-b"])]]
    assert brokerage.assign([a, b], on_b, "atlas") == [None], "se-b is closed to atlas"
    assert brokerage.assign([a, b], on_b, "cms") != [None]
    # A queue's own element first, then another replica it may read; a file without replicas is the queue's.
    assert b.usable(["se-a", "se-b"], "cms") == ["se-b"] and a.usable(["se-b", "se-a"], "cms") == ["se-a", "se-b"]
    assert a.usable([], "atlas") == [""]
    # Queues whose elements are not known read everything (as before elements had access).
    assert queue("c").usable(["x"], "atlas") == ["x"]
    why = brokerage.unreadable([b], [("user.alice:f.1", ["se-a"])], "atlas")
    assert why == "no candidate queue may read user.alice:f.1 (on se-a) for VO atlas: asked b"


# -- scouts and fair share ---------------------------------------------------------------


def test_scout_measurements_set_requests_with_margin_and_floors() -> None:
    measured = [scouts.Measurement(1000, 600, 500), scouts.Measurement(1200, 900, 700),
                scouts.Measurement(800, 400, 300)]
    result = scouts.evaluate(measured)
    assert (result.memory_mb, result.walltime_seconds) == (1200, 900)
    assert (result.request_memory_mb, result.request_walltime_seconds) == (1800, 1800)
    tiny = scouts.evaluate([scouts.Measurement(0, 0.2, 0.0)])
    assert (tiny.request_memory_mb, tiny.request_walltime_seconds) == (scouts.MIN_MEMORY_MB,
                                                                       scouts.MIN_WALLTIME_SECONDS)
    assert scouts.percentile(list(range(1, 101))) == 95


def test_fair_share_lowers_a_busy_users_next_jobs() -> None:
    assert fairshare.job_priorities(10, 0, 3, jobs_per_point=100) == [10, 10, 10]
    busy = fairshare.job_priorities(10, 950, 100, jobs_per_point=100)
    assert busy[0] == 1 and busy[-1] == 0


# -- progress ----------------------------------------------------------------------------


def test_progress_counts_files_from_their_chunks() -> None:
    assert file_status(["finished", "finished"]) == "finished"
    assert file_status(["finished", "running"]) == "running"
    assert file_status(["finished", "failed"]) == "failed"
    progress = Progress.of([(1, "finished"), (1, "finished"), (2, "failed"), (3, "ready"), (3, "finished")])
    assert progress.files_total == 3
    assert (progress.by_status["finished"], progress.by_status["failed"], progress.by_status["ready"]) == (1, 1, 1)
    assert [final_state(10, 10), final_state(3, 10), final_state(0, 10)] == ["done", "finished", "failed"]


# -- states and commands -----------------------------------------------------------------

# PanDA's rules, written out: the states each command is accepted in.
EXPECTED = {
    "kill": {S.REGISTERED, S.DEFINED, S.READY, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PENDING, S.PAUSED,
             S.THROTTLED, S.EXHAUSTED, S.FINISHING, S.TORETRY},
    "finish": {S.READY, S.PENDING, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PAUSED, S.THROTTLED, S.EXHAUSTED},
    "retry": {S.FINISHED, S.FAILED, S.ABORTED, S.EXHAUSTED},
    "pause": {S.REGISTERED, S.DEFINED, S.READY, S.PENDING, S.SCOUTING, S.SCOUTED, S.RUNNING, S.THROTTLED},
    "resume": {S.PAUSED, S.THROTTLED},
    "reassign": {S.READY, S.PENDING, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PAUSED, S.THROTTLED},
    "priority": {S.REGISTERED, S.DEFINED, S.READY, S.SCOUTING, S.SCOUTED, S.RUNNING, S.PENDING, S.PAUSED,
                 S.THROTTLED, S.EXHAUSTED, S.FINISHING, S.TORETRY},
}


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_each_command_is_accepted_exactly_in_its_states(command: str) -> None:
    for state in TaskState:
        if state in EXPECTED[command]:
            states.check_command(1, command, state)
        else:
            with pytest.raises(FailedPrecondition, match=f"task 1 is {state.value}: {command} is accepted only"):
                states.check_command(1, command, state)


def test_final_states_go_nowhere_but_retry() -> None:
    for state in states.FINAL_STATES:
        assert states.ALLOWED[state] <= {S.TORETRY}
    assert states.can_transition(S.FINISHING, S.FINISHED) and not states.can_transition(S.DONE, S.RUNNING)
    with pytest.raises(FailedPrecondition, match="task 3 is done: it cannot become running"):
        states.check_transition(3, S.DONE, S.RUNNING)


def test_filters_take_wildcards() -> None:
    (comparison,) = parse_filter('task_name = "mc23.*"', {"task_name": str}).comparisons
    assert comparison.is_pattern
    with pytest.raises(InvalidArgument, match="unknown filter field"):
        parse_filter("nope = 1", {"task_name": str})
