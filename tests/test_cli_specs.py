"""The command line's parts that need no server: job specs from flags and YAML, list filters,
durations, tables and argument parsing."""

from __future__ import annotations

import textwrap
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2
from panda_cli import jobs, output, queues, specs
from panda_cli.main import main, parse_args

INPUT = job_pb2.JobFile.KIND_INPUT
OUTPUT = job_pb2.JobFile.KIND_OUTPUT


def ts(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


# --- flags -> Job ------------------------------------------------------------------------


def test_job_from_flags_maps_every_flag() -> None:
    job = specs.job_from_flags(
        queue="local",
        command=["--", "sh", "-c", "echo hi > out.txt"],
        inputs=["in.dat"],
        outputs=["out.txt", "log.txt"],
        cores=4,
        memory=8000,
        walltime="1h30m",
        priority=50,
        max_attempts=2,
        label="evgen",
        env=["A=1", "B=x=y", "EMPTY="],
    )
    assert job.queue == "local"
    assert list(job.command) == ["sh", "-c", "echo hi > out.txt"]  # the `--` is not part of it
    assert [(f.lfn, f.kind) for f in job.files] == [("in.dat", INPUT), ("out.txt", OUTPUT), ("log.txt", OUTPUT)]
    assert job.resources.cores == 4
    assert job.resources.memory_mb == 8000
    assert job.resources.walltime_seconds == 5400
    assert job.priority == 50
    assert job.max_attempts == 2
    assert job.label == "evgen"
    assert dict(job.environment) == {"A": "1", "B": "x=y", "EMPTY": ""}
    # Output-only fields stay unset.
    assert job.job_id == 0 and job.state == 0 and job.attempt == 0


def test_job_from_flags_leaves_unstated_values_to_the_server() -> None:
    job = specs.job_from_flags(queue="q", command=["true"])
    assert job.resources.cores == 0 and job.resources.memory_mb == 0 and job.resources.walltime_seconds == 0
    assert job.priority == 0 and job.max_attempts == 0 and not job.files and not job.environment


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queue": None, "command": ["true"]}, "--queue is required"),
        ({"queue": "q", "command": []}, "no command given"),
        ({"queue": "q", "command": ["--"]}, "no command given"),
        ({"queue": "q", "command": ["true"], "env": ["NOEQUALS"]}, "expected KEY=VALUE"),
        ({"queue": "q", "command": ["true"], "walltime": "soon"}, "not a duration"),
    ],
)
def test_job_from_flags_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(specs.SpecError, match=message):
        specs.job_from_flags(**kwargs)


# --- YAML -> Jobs ------------------------------------------------------------------------


def test_yaml_list_of_jobs() -> None:
    text = textwrap.dedent(
        """
        - queue: local
          command: sh -c 'echo "a b" > out.txt'
          outputs: [out.txt]
          cores: 2
          memory: 1000
          walltime: 2h
          priority: -5
          max_attempts: 1
          label: first
          env: {N: 3, MODE: fast}
        - queue: other
          command: [sleep, 5]
          inputs:
            - in1.dat
            - {lfn: in2.dat, size_bytes: 1234, adler32: "ABCDEF", storage_element: "se-x"}
          env: ["X=1"]
        """
    )
    first, second = specs.jobs_from_yaml(text)
    assert list(first.command) == ["sh", "-c", 'echo "a b" > out.txt']
    assert [(f.lfn, f.kind) for f in first.files] == [("out.txt", OUTPUT)]
    assert (first.resources.cores, first.resources.memory_mb, first.resources.walltime_seconds) == (2, 1000, 7200)
    assert (first.priority, first.max_attempts, first.label) == (-5, 1, "first")
    assert dict(first.environment) == {"N": "3", "MODE": "fast"}
    assert second.queue == "other"
    assert list(second.command) == ["sleep", "5"]
    assert second.files[0] == job_pb2.JobFile(lfn="in1.dat", kind=INPUT)
    assert second.files[1] == job_pb2.JobFile(
        lfn="in2.dat", kind=INPUT, size_bytes=1234, adler32="00abcdef", storage_element="se-x"
    )
    assert dict(second.environment) == {"X": "1"}


def test_yaml_jobs_mapping_and_flag_defaults() -> None:
    text = "jobs:\n  - command: echo one\n  - command: echo two\n    queue: special\n    priority: 9\n"
    one, two = specs.jobs_from_yaml(text, defaults={"queue": "local", "priority": 3, "label": None})
    assert (one.queue, one.priority) == ("local", 3)
    assert (two.queue, two.priority) == ("special", 9)  # the file wins over the flags


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- queue: local\n  command: [echo\n", "not valid YAML at line"),
        ("- queue: local\n\tcommand: x\n", "not valid YAML"),
        ("", "no jobs"),
        ("jobs: []\n", "empty"),
        ("just a string\n", "expected a list of jobs"),
        ("jobs:\n  - command: echo\n", "job 1: `queue` is required"),
        ("- queue: q\n  command: echo\n- queue: q\n", "job 2: `command` is required"),
        ("- queue: q\n  command: echo\n  cmd: oops\n", "unknown key\\(s\\) cmd"),
        ("- queue: q\n  command: echo\n  cores: many\n", "`cores` must be a whole number"),
        ("- queue: q\n  command: echo\n  cores: 0\n", "`cores` must be at least 1"),
        ("- queue: q\n  command: echo\n  walltime: forever\n", "`walltime`: not a duration"),
        ("- queue: q\n  command: echo\n  env: [NOVALUE]\n", "`env`"),
        ("- queue: q\n  command: echo\n  inputs: [{size_bytes: 3}]\n", "needs an `lfn`"),
        ("- queue: q\n  command: echo\n  inputs: [{lfn: a, adler32: xyz}]\n", "adler32 must be hex"),
        ('- queue: q\n  command: "echo \'unclosed"\n', "`command`"),
        ("tasks: []\n", "unknown top-level key"),
        ("- 42\n", "job 1: expected a mapping"),
    ],
)
def test_bad_yaml_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(specs.SpecError, match=message) as caught:
        specs.jobs_from_yaml(text, source="jobs.yaml")
    assert str(caught.value).startswith("jobs.yaml: ")


def test_submit_with_bad_yaml_exits_1_without_calling_the_server(tmp_path, capsys) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("- queue: local\n  command: echo ok\n- queue: local\n  comand: typo\n")
    # Port 1: if the command tried to submit, it would say the server is unreachable instead.
    code = main(["--server", "127.0.0.1:1", "submit", "-f", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"panda: {path}: job 2: unknown key(s) comand")
    assert "cannot reach" not in err


def test_submit_missing_file(tmp_path, capsys) -> None:
    code = main(["--server", "127.0.0.1:1", "submit", "-f", str(tmp_path / "nope.yaml")])
    assert code == 1
    assert "cannot read" in capsys.readouterr().err


def test_submit_usage_errors_exit_2(capsys) -> None:
    assert main(["--server", "127.0.0.1:1", "submit", "--", "echo"]) == 2
    assert "--queue is required" in capsys.readouterr().err
    assert main(["--server", "127.0.0.1:1", "submit", "-f", "x.yaml", "--", "echo"]) == 2


# --- durations, --since and the filter ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("45s", 45),
        ("30m", 1800),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        (120, 120),
        ("1.5h", 5400),
    ],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert specs.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "-5", "1h-", "ten"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(specs.SpecError):
        specs.parse_duration(text)


def test_since_relative() -> None:
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    assert specs.parse_since("1h", now) == datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
    assert specs.parse_since("30m", now) == datetime(2026, 3, 1, 11, 30, 0, tzinfo=UTC)
    assert specs.parse_since("2d", now) == now - timedelta(days=2)


def test_since_iso() -> None:
    assert specs.parse_since("2026-01-31T08:00:00Z") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    assert specs.parse_since("2026-01-31T10:00:00+02:00") == datetime(2026, 1, 31, 8, tzinfo=UTC)
    # Without a zone it is the machine's local time.
    local = datetime(2026, 1, 31, 8, 0, 0).astimezone()
    assert specs.parse_since("2026-01-31T08:00:00") == local.astimezone(UTC)
    assert specs.parse_since("2026-01-31") == datetime(2026, 1, 31).astimezone().astimezone(UTC)
    with pytest.raises(specs.SpecError, match="--since"):
        specs.parse_since("yesterday")


def test_build_filter_from_flags() -> None:
    since = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
    text = specs.build_job_filter(state="running", queue="local", task_id=7, owner="alice", since=since)
    assert text == (
        'state = RUNNING AND queue = "local" AND task_id = 7 AND owner = "alice" '
        'AND update_time >= "2026-03-01T11:00:00Z"'
    )


def test_build_filter_since_1h_is_an_hour_ago_in_utc() -> None:
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    text = specs.build_job_filter(since=specs.parse_since("1h"))
    after = datetime.now(UTC) - timedelta(hours=1)
    stamp = datetime.strptime(text.split('"')[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert text.startswith('update_time >= "') and text.endswith('Z"')
    assert before <= stamp <= after


def test_build_filter_edge_cases() -> None:
    assert specs.build_job_filter() == ""
    assert specs.build_job_filter(state="STATE_FAILED") == "state = FAILED"
    assert specs.build_job_filter(state="Cancelled") == "state = CANCELLED"
    assert specs.build_job_filter(task_id=0) == "task_id = 0"
    assert specs.build_job_filter(queue='we"ird\\q') == 'queue = "we\\"ird\\\\q"'
    with pytest.raises(specs.SpecError, match="unknown state 'runing'"):
        specs.build_job_filter(state="runing")
    with pytest.raises(specs.SpecError):
        specs.build_job_filter(state="unspecified")


def test_jobs_flags_reach_the_filter(monkeypatch) -> None:
    seen: dict[str, object] = {}

    def list_jobs(request: job_service_pb2.ListJobsRequest) -> job_service_pb2.ListJobsResponse:
        seen["request"] = request
        return job_service_pb2.ListJobsResponse(total_size=0)

    class FakeClient:
        def __init__(self, address: str) -> None:
            self.jobs = types.SimpleNamespace(ListJobs=list_jobs)

        def __enter__(self) -> FakeClient:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr(jobs, "server_client", FakeClient)
    assert main(["jobs", "--state", "failed", "--queue", "local", "--limit", "7", "--page-token", "abc"]) == 0
    request = seen["request"]
    assert isinstance(request, job_service_pb2.ListJobsRequest)
    assert request.filter == 'state = FAILED AND queue = "local"'
    assert request.page_size == 7 and request.page_token == "abc"
    assert main(["jobs", "--since", "nonsense"]) == 2


# --- rendering ---------------------------------------------------------------------------


def test_render_table_aligns_columns() -> None:
    text = output.render_table(["ID", "NAME", "N"], [[1, "alpha", 5], [100, "b", 12]], right=(0, 2))
    assert text.splitlines() == [
        " ID  NAME    N",
        "  1  alpha   5",
        "100  b      12",
    ]


def test_render_table_has_no_trailing_blanks() -> None:
    text = output.render_table(["A", "B"], [["x", ""], ["longer", "y"]])
    assert all(line == line.rstrip() for line in text.splitlines())
    assert text.splitlines()[1] == "x"


def test_names_and_values() -> None:
    assert output.job_state_name(job_pb2.Job.STATE_RUNNING) == "running"
    assert output.job_state_name(99) == "state-99"
    assert output.queue_status_name(queue_pb2.Queue.STATUS_BROKEROFF) == "brokeroff"
    assert output.parse_enum("Online", queue_pb2.Queue.Status, "STATUS_", "status") == queue_pb2.Queue.STATUS_ONLINE
    assert output.format_duration(0) == "-"
    assert output.format_duration(90) == "1m30s"
    assert output.format_duration(86400 + 3600) == "1d1h"
    assert output.format_bytes(512) == "512 B"
    assert output.format_bytes(1536) == "1.5 KiB"
    assert output.format_time(timestamp_pb2.Timestamp()) == "-"


def test_format_time_is_local_with_its_zone(local_zone: Callable[[str], None]) -> None:
    moment = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    local_zone("XST-5")
    assert output.format_time(ts(moment)) == "2026-05-04 08:02:01 XST"
    # A time given in another offset is converted, not printed as it came.
    other = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone(timedelta(hours=-2)))
    assert output.format_time(ts(other)) == "2026-05-04 10:02:01 XST"
    local_zone("UTC")
    assert output.format_time(ts(moment)) == "2026-05-04 03:02:01 UTC"
    assert output.format_time(timestamp_pb2.Timestamp()) == "-"


def test_jobs_table() -> None:
    updated = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = [
        job_pb2.Job(
            job_id=12,
            state=job_pb2.Job.STATE_RUNNING,
            queue="local",
            attempt=1,
            max_attempts=3,
            priority=10,
            command=["sleep", "20"],
            update_time=ts(updated),
        ),
        job_pb2.Job(
            job_id=3,
            state=job_pb2.Job.STATE_FAILED,
            queue="big-queue",
            attempt=3,
            max_attempts=3,
            error_code=1305,
            label="reco",
            command=["x"],
        ),
    ]
    lines = jobs.render_jobs_table(rows).splitlines()
    assert lines[0].split() == ["ID", "STATE", "QUEUE", "ATTEMPT", "PRIO", "ERROR", "LABEL/COMMAND", "UPDATED"]
    assert lines[1].split()[:7] == ["12", "running", "local", "1/3", "10", "-", "sleep"]
    assert lines[1].endswith(output.format_datetime(updated))
    assert lines[2].split() == ["3", "failed", "big-queue", "3/3", "0", "1305", "reco", "-"]
    # Columns line up: every row has its state where the header's STATE starts.
    column = lines[0].index("STATE")
    assert lines[1][column:].startswith("running") and lines[2][column:].startswith("failed")


def test_long_commands_are_truncated() -> None:
    job = job_pb2.Job(job_id=1, command=["python", "-c", "x" * 200])
    row = jobs.render_jobs_table([job]).splitlines()[1]
    assert "..." in row and len(row) < 150


def test_list_footer() -> None:
    assert jobs.list_footer(50, 120, "tok") == "showing 50 of 120; next page: same command with --page-token tok"
    assert jobs.list_footer(3, 3, "") == "showing 3 of 3"


def test_show_job_renders_files_history_and_log() -> None:
    job = job_pb2.Job(
        job_id=5,
        state=job_pb2.Job.STATE_FAILED,
        queue="local",
        attempt=2,
        max_attempts=3,
        owner="alice",
        pilot_id="pilot-a",
        node="wn01",
        command=["sh", "-c", "exit 3"],
        error_code=1305,
        error_diag="payload exited with code 3",
        log_tail="line one\nline two\n",
        files=[
            job_pb2.JobFile(
                lfn="out.txt",
                kind=OUTPUT,
                size_bytes=2048,
                adler32="0a0b0c0d",
                status=job_pb2.JobFile.STATUS_READY,
                storage_element="file:///se",
            )
        ],
        history=[
            job_pb2.JobEvent(cursor=1, job_id=5, attempt=1, state=job_pb2.Job.STATE_DEFINED),
            job_pb2.JobEvent(
                cursor=9,
                job_id=5,
                attempt=2,
                state=job_pb2.Job.STATE_FAILED,
                error_code=1305,
                reason="payload exited with code 3",
            ),
        ],
    )
    text = jobs.render_job(job)
    assert "state:" in text and "failed" in text
    assert "attempt:      2/3" in text
    assert "pilot-a on wn01" in text
    assert "1305: payload exited with code 3" in text
    assert "output  out.txt  2.0 KiB  0a0b0c0d  ready   file:///se" in text
    assert "[error 1305] payload exited with code 3" in text
    assert "log tail:\n  line one\n  line two" in text


def test_queue_table_and_counts() -> None:
    queue = queue_pb2.Queue(
        queue_id="local",
        status=queue_pb2.Queue.STATUS_ONLINE,
        storage_element="file:///data/se/local",
        connected_pilots=2,
    )
    queue.max_resources.cores = 8
    queue.max_resources.walltime_seconds = 7200
    queue.job_counts.update({"running": 2, "activated": 5, "finished": 0})
    lines = queues.render_queues_table([queue]).splitlines()
    assert lines[0].split() == ["ID", "STATUS", "CORES", "MEMORY", "WALLTIME", "SE", "JOBS", "PILOTS"]
    # Lifecycle order (activated before running), zeros left out.
    assert lines[1].split() == [
        "local",
        "online",
        "8",
        "-",
        "2h",
        "file:///data/se/local",
        "activated=5",
        "running=2",
        "2",
    ]


def test_kill_result_lines() -> None:
    results = [
        job_service_pb2.JobActionResult(job_id=1, status=status_pb2.Status(code=0), state=job_pb2.Job.STATE_CANCELLED),
        job_service_pb2.JobActionResult(job_id=22, status=status_pb2.Status(code=0), state=job_pb2.Job.STATE_RUNNING),
        job_service_pb2.JobActionResult(
            job_id=333,
            status=status_pb2.Status(code=9, message="job 333 is finished"),
            state=job_pb2.Job.STATE_FINISHED,
        ),
    ]
    lines, refused = jobs.action_lines(results, jobs._kill_outcome)
    assert refused
    assert lines == [
        "  1  cancelled",
        " 22  kill sent (running)",
        "333  refused: FAILED_PRECONDITION: job 333 is finished",
    ]


def test_watch_initial_event_and_exit_codes() -> None:
    job = job_pb2.Job(
        job_id=4,
        state=job_pb2.Job.STATE_RUNNING,
        attempt=1,
        history=[job_pb2.JobEvent(cursor=3, job_id=4, attempt=1, state=job_pb2.Job.STATE_RUNNING, reason="started")],
    )
    assert jobs.event_from_job(job).cursor == 3
    line = jobs.format_event(jobs.event_from_job(job))
    assert line.split() == ["-", "running", "attempt", "1", "started"]  # no time recorded: "-"
    assert jobs.watch_exit_code(job_pb2.Job.STATE_FINISHED) == 0
    assert jobs.watch_exit_code(job_pb2.Job.STATE_CANCELLED) == 6
    assert jobs.watch_exit_code(job_pb2.Job.STATE_FAILED) == 6


# --- argument parsing --------------------------------------------------------------------


def test_submit_command_keeps_its_own_options() -> None:
    args = parse_args(["submit", "--queue", "local", "--", "echo", "--json", "-n"])
    assert args.payload == ["--", "echo", "--json", "-n"]
    assert args.json is None  # not given: main() takes the output_format setting


def test_global_options_before_or_after_the_subcommand() -> None:
    assert parse_args(["--json", "--server", "h:1", "jobs"]).json is True
    args = parse_args(["jobs", "--json", "--server", "h:2"])
    assert (args.json, args.server) == (True, "h:2")
    assert parse_args(["--server", "h:3", "queue", "list"]).server == "h:3"


def test_pilot_arguments_pass_through() -> None:
    args = parse_args(["pilot", "--queue", "local", "--workdir", "/tmp/w", "--help"])
    assert args.pilot_args == ["--queue", "local", "--workdir", "/tmp/w", "--help"]


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(["job", "show", "abc"])
    assert caught.value.code == 2
    with pytest.raises(SystemExit):
        parse_args(["jobs", "--limit", "0"])
    with pytest.raises(SystemExit):
        parse_args(["jobs", "--bogus"])


def test_unreachable_server_is_one_clear_line(capsys) -> None:
    assert main(["--server", "127.0.0.1:1", "jobs"]) == 5
    err = capsys.readouterr().err
    assert err == (
        "panda: cannot reach the server at 127.0.0.1:1 (is `panda up` running? set PANDA_SERVER or --server)\n"
    )
