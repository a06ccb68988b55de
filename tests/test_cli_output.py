"""What the command line says, as scripts and people read it, against a real server, JEDI and
identity service (SQLite and PostgreSQL): exit codes, `--json` of every list command, `--limit`
past the server's page maximum, times with their zone, `panda submit -f` of more jobs than one
call takes, and progress, plain off a terminal, drawn at one (rich's TTY_COMPATIBLE makes one of
a pipe)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest

from panda.server.v1 import job_pb2, job_service_pb2
from panda_cli.main import build_parser, main
from panda_cli.output import id_ranges
from tests.cli_support import Result
from tests.registry_support import Stubs, config, robot_channel, worker
from tests.server_support import get_job, wait_for
from tools.cluster import IdentityHandle, ServerHandle, free_port

pytest_plugins = ["tests.jedi_fixtures"]

J = job_pb2.Job
# What makes rich take a pipe for a terminal a person looks at.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm-256color", "COLUMNS": "160"}
ESCAPE = "\x1b["




@pytest.fixture
def panda(server: ServerHandle, capsys: pytest.CaptureFixture[str],
          monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """`panda ARGS...` in-process, its server at PANDA_SERVER: exit code, stdout and stderr (not a
    terminal)."""
    monkeypatch.setenv("PANDA_SERVER", server.address)

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def run_panda(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """`panda ARGS...` as a process of its own."""
    done = subprocess.run([sys.executable, "-m", "panda_cli.main", *argv], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    return Result(done.returncode, done.stdout, done.stderr)


def jobs_file(path: Path, count: int, queue: str = "local", bad_at: int = 0) -> Path:
    """A YAML file of `count` jobs on `queue`; job `bad_at` (counted from 1) on a queue that does not exist."""
    path.write_text("".join(f"- {{queue: {'nosuch' if i == bad_at else queue}, command: echo {i}}}\n"
                            for i in range(1, count + 1)))
    return path


def table(text: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def total_jobs(jobs_stub) -> int:  # type: ignore[no-untyped-def]
    return jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1), timeout=10).total_size


def all_job_ids(jobs_stub) -> list[int]:  # type: ignore[no-untyped-def]
    """Every job's id, oldest first, through the server's pages."""
    ids, token = [], ""
    while True:
        page = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=1000, page_token=token), timeout=30)
        ids += [job.job_id for job in page.jobs]
        token = page.next_page_token
        if not token:
            return sorted(ids)


# --- exit codes --------------------------------------------------------------------------


def test_each_exit_code_from_a_real_command(  # type: ignore[no-untyped-def]
    panda, server: ServerHandle, local_queue, identity: IdentityHandle, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert panda("queue", "list").code == 0

    bad_flag = run_panda("--server", server.address, "jobs", "--bogus")
    assert bad_flag.code == 2 and "unrecognized arguments: --bogus" in bad_flag.err
    assert panda("submit", "--batch-size", "2", "--queue", "local", "--", "true").code == 2

    missing = panda("job", "show", "999999")
    assert (missing.code, missing.err) == (3, "panda: NOT_FOUND: job 999999 not found\n")
    refused = panda("jobs", "--page-token", "garbage")
    assert refused.code == 1 and refused.err.startswith("panda: INVALID_ARGUMENT: ")

    # A token without the role: alice may not configure storage elements.
    monkeypatch.setenv("PANDA_TOKEN", identity.token("alice"))
    denied = panda("se", "add", "mine", f"file://{tmp_path}/mine")
    assert denied.code == 4 and "PERMISSION_DENIED" in denied.err
    # No token at all.
    monkeypatch.setenv("PANDA_TOKEN", "")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nobody"))
    anonymous = panda("jobs")
    assert anonymous.code == 4 and "panda login" in anonymous.err
    monkeypatch.setenv("PANDA_TOKEN", identity.token("admin"))

    closed = run_panda("--server", f"127.0.0.1:{free_port()}", "jobs")
    assert closed.code == 5 and closed.err.startswith("panda: cannot reach the server at ")

    # A job that ends without succeeding (here cancelled before any pilot took it).
    job_id = int(panda("submit", "--queue", "local", "--", "true").out)
    assert panda("job", "kill", str(job_id)).code == 0
    watched = panda("job", "watch", str(job_id))
    assert watched.code == 6 and watched.lines()[-1].split()[3] == "cancelled"


# --- --json of every list command --------------------------------------------------------

# Every list command and the key of its list: a new one must be added here (and so checked).
LIST_COMMANDS = {
    ("jobs",): "jobs",
    ("tasks",): "tasks",
    ("dataset", "list"): "datasets",
    ("queue", "list"): "queues",
    ("se", "list"): "storage_elements",
    ("iam", "user", "list"): "users",
    ("iam", "group", "list"): "groups",
    ("iam", "client", "list"): "clients",
    ("workers",): "workers",
    ("harvester", "commands"): "commands",
}


def commands_of(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command the parser knows, by its words (`("iam", "user", "list")`)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands_of(sub, (*path, name))
            return
    yield path, parser


def test_every_list_command_prints_one_json_shape(  # type: ignore[no-untyped-def]
    panda, jedi, identity: IdentityHandle, local_queue, storage_dir: Path, tmp_path: Path, server: ServerHandle
) -> None:
    found = {path for path, parser in commands_of(build_parser())
             if path[-1] == "list" or any("--page-token" in a.option_strings for a in parser._actions)}
    assert found == set(LIST_COMMANDS)

    # Something in every list: a job, a dataset, a task (the rest is there from the start).
    assert panda("submit", "--queue", "local", "--", "true").code == 0
    assert panda("submit", "--queue", "local", "--", "false").code == 0
    source = tmp_path / "events.1.txt"
    source.write_text("1\n2\n")
    registered = panda("dataset", "register", "user.me.shape", str(source), "--se", "local", "--jedi", jedi.address)
    assert registered.code == 0, registered.err
    task = tmp_path / "task.yaml"
    task.write_text("task_name: shape\ntransformation: cat ${IN}\ninput_dataset: user.me.shape\n"
                    "output_dataset: user.me.shape.out\nqueues: [local]\n")
    assert panda("task", "submit", "-f", str(task), "--jedi", jedi.address).code == 0
    # A harvester instance's worker, and a command for the instance.
    with robot_channel(server.address, identity) as channel:
        instance = Stubs(channel)
        instance.register("h1", config())
        instance.report("h1", worker("h1-1"))
    assert panda("worker", "kill", "h1-1").code == 0

    where = {"iam": ["--iam", identity.address], "tasks": ["--jedi", jedi.address],
             "dataset": ["--jedi", jedi.address], "harvester": ["h1"]}
    for path, plural in LIST_COMMANDS.items():
        result = panda(*path, "--json", *where.get(path[0], []))
        assert result.code == 0, (path, result.err)
        data = json.loads(result.out)
        assert isinstance(data, dict) and set(data) <= {plural, "next_page_token", "total_size"}, (path, data)
        assert isinstance(data[plural], list) and data[plural] and all(isinstance(i, dict) for i in data[plural])
        if "total_size" in data:
            assert data["total_size"] == len(data[plural]) and not data.get("next_page_token")

    # Empty, the list is still there; with more to come, the token that continues.
    assert json.loads(panda("jobs", "--state", "running", "--json").out) == {"jobs": [], "total_size": 0}
    every = json.loads(panda("jobs", "--json").out)["total_size"]  # ours, and the task's that JEDI made
    first = json.loads(panda("jobs", "--limit", "1", "--json").out)
    assert (len(first["jobs"]), first["total_size"]) == (1, every) and every >= 2 and first["next_page_token"]
    rest = json.loads(panda("jobs", "--limit", str(every), "--page-token", first["next_page_token"], "--json").out)
    assert set(rest) == {"jobs", "total_size"} and len(rest["jobs"]) == every - 1  # the last page: no token
    assert first["jobs"][0]["job_id"] not in {job["job_id"] for job in rest["jobs"]}


# --- --limit and times -------------------------------------------------------------------


def test_limit_pages_past_the_server_maximum_and_times_carry_their_zone(  # type: ignore[no-untyped-def]
    panda, local_queue, jobs_stub, tmp_path: Path, local_zone: Callable[[str], None]
) -> None:
    submitted = panda("submit", "-f", str(jobs_file(tmp_path / "jobs.yaml", 1205)))
    assert submitted.code == 0, submitted.err

    listed = panda("jobs", "--limit", "1200")
    *rows, footer = table(listed.out)
    assert listed.code == 0 and len(rows) == 1 + 1200  # the header and 1,200 jobs, not the server's 1,000
    prefix = "showing 1200 of 1205; next page: same command with --page-token "
    assert footer[0].startswith(prefix)
    rest = panda("jobs", "--limit", "1200", "--page-token", footer[0].removeprefix(prefix))
    *rest_rows, rest_footer = table(rest.out)
    assert rest_footer == ["showing 5 of 1205"]
    ids = [int(row[0]) for row in rows[1:] + rest_rows[1:]]
    assert len(set(ids)) == 1205 and ids == sorted(ids, reverse=True)

    as_json = json.loads(panda("jobs", "--limit", "1200", "--json").out)
    assert (len(as_json["jobs"]), as_json["total_size"]) == (1200, 1205) and as_json["next_page_token"]

    # Every time says its zone: here XST, five hours east of UTC.
    local_zone("XST-5")
    newest = get_job(jobs_stub, ids[0])

    def in_xst(ts) -> str:  # type: ignore[no-untyped-def]
        return (ts.ToDatetime(tzinfo=UTC) + timedelta(hours=5)).strftime("%Y-%m-%d %H:%M:%S") + " XST"

    header, row = table(panda("jobs", "--limit", "1").out)[:2]
    assert header[-1] == "UPDATED" and row[-1] == in_xst(newest.update_time)
    shown = panda("job", "show", str(newest.job_id)).out
    assert re.search(rf"^created:\s+{in_xst(newest.create_time)}$", shown, flags=re.M), shown
    assert re.search(rf"^\s+{in_xst(newest.history[0].time)}\s+activated\s", shown, flags=re.M), shown
    queue = panda("queue", "show", "local").out
    assert re.search(r"^created:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d XST$", queue, flags=re.M), queue


# --- submit -f in batches ----------------------------------------------------------------


def test_a_file_of_more_jobs_than_one_call_takes_goes_in_batches(  # type: ignore[no-untyped-def]
    panda, server: ServerHandle, local_queue, jobs_stub, tmp_path: Path
) -> None:
    # 5,001 jobs: one more than a call takes (the server refuses such a call: split the batch).
    result = panda("submit", "-f", str(jobs_file(tmp_path / "many.yaml", 5001)))
    assert result.code == 0, result.err
    ids = all_job_ids(jobs_stub)
    assert len(ids) == 5001
    # A line per batch and the whole: a summary, not 5,001 ids.
    assert result.lines() == [f"batch 1 of 2 (jobs 1-5000 of the file): submitted as {id_ranges(ids[:5000])}",
                              f"batch 2 of 2 (job 5001 of the file): submitted as {ids[5000]}",
                              f"submitted 5001 jobs: {id_ranges(ids)}"]
    # Off a terminal, progress is plain lines on stderr.
    assert result.err == "submitting: 5000/5001 jobs\nsubmitting: 5001/5001 jobs\n"

    # A batch refused: those before it stay, those after it are not tried, and the exit code says why.
    bad = jobs_file(tmp_path / "bad.yaml", 5, bad_at=4)
    as_json = panda("submit", "-f", str(bad), "--batch-size", "2", "--json")
    assert as_json.code == 3
    data = json.loads(as_json.out)
    assert [b["status"] for b in data["batches"]] == ["submitted", "failed", "not tried"]
    assert [(b["first_job"], b["last_job"]) for b in data["batches"]] == [(1, 2), (3, 4), (5, 5)]
    assert "NOT_FOUND" in data["batches"][1]["error"] and len(data["job_ids"]) == 2
    assert len({b["request_id"] for b in data["batches"]}) == 3
    # The refused job is named by its place in the file (jobs[3]), not in its batch.
    assert as_json.err.splitlines() == ["submitting: 2/5 jobs",
                                        "panda: 3 of 5 jobs not submitted: NOT_FOUND: jobs[3]: queue nosuch not found"]
    assert total_jobs(jobs_stub) == 5001 + 2

    text = panda("submit", "-f", str(bad), "--batch-size", "2")
    assert text.code == 3
    first, refused, untried, summary = text.lines()
    assert first.startswith("batch 1 of 3 (jobs 1-2 of the file): submitted as ")
    assert refused.startswith("batch 2 of 3 (jobs 3-4 of the file): not submitted: NOT_FOUND: ")
    assert untried == "batch 3 of 3 (job 5 of the file): not submitted (not tried)"
    assert summary == f"submitted 2 of 5 jobs: {first.split(' as ')[1]}"
    assert total_jobs(jobs_stub) == 5001 + 4

    # Interrupted (Ctrl-C) after its first batch: what was submitted is said all the same.
    before = total_jobs(jobs_stub)
    process = subprocess.Popen(
        [sys.executable, "-m", "panda_cli.main", "--server", server.address, "submit", "-f",
         str(jobs_file(tmp_path / "long.yaml", 5000)), "--batch-size", "250"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stderr is not None
    assert process.stderr.readline() == "submitting: 500/5000 jobs\n"  # the first tenth
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    *batches, summary = out.splitlines()
    sent = [line for line in batches if ": submitted as " in line]
    assert len(batches) == 20 and len(sent) >= 2 and batches[: len(sent)] == sent
    assert all(": not submitted" in line for line in batches[len(sent):])
    assert summary.startswith(f"submitted {len(sent) * 250} of 5000 jobs: ")
    assert err.splitlines()[-1].startswith(f"panda: {5000 - len(sent) * 250} of 5000 jobs not submitted: ")
    # Only the batch being sent when it was interrupted may be stored without its ids shown.
    assert len(sent) * 250 <= total_jobs(jobs_stub) - before <= (len(sent) + 1) * 250

    # At a terminal: a bar of the jobs submitted, on stderr; stdout has the summary alone.
    stored_before_drawn = total_jobs(jobs_stub)
    drawn = run_panda("--server", server.address, "submit", "-f", str(jobs_file(tmp_path / "three.yaml", 3)),
                      "--batch-size", "1", env=TERMINAL)
    assert drawn.code == 0, drawn.err
    assert ESCAPE in drawn.err and "━" in drawn.err and "3/3 jobs" in drawn.err
    assert ESCAPE not in drawn.out and drawn.out.splitlines()[-1].startswith("submitted 3 jobs: ")
    assert total_jobs(jobs_stub) - stored_before_drawn == 3


# --- job watch ---------------------------------------------------------------------------


def test_job_watch_prints_what_a_running_job_went_through_then_follows(  # type: ignore[no-untyped-def]
    panda, server: ServerHandle, local_queue, start_pilot, jobs_stub
) -> None:
    job_id = int(panda("submit", "--queue", "local", "--", "sleep", "5").out)
    start_pilot()
    wait_for(jobs_stub, job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    watched = panda("job", "watch", str(job_id))
    assert watched.code == 0, watched.err
    assert [line.split()[3] for line in watched.lines()] == ["activated", "sent", "starting", "running", "finished"]
    assert watched.err == ""  # off a terminal, the events are the progress

    # At a terminal, a live line says what the job is doing now.
    other = int(panda("submit", "--queue", "local", "--", "true").out)
    drawn = run_panda("--server", server.address, "job", "watch", str(other), env=TERMINAL)
    assert drawn.code == 0, drawn.err
    assert ESCAPE in drawn.err and f"job {other}: finished (attempt 1)" in drawn.err
