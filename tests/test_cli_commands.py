"""The `panda` commands as a user types them, against a real server (SQLite and PostgreSQL)
with real pilot processes running real payloads into a POSIX storage element: what each
command prints, and the exit code it returns.

Most commands run in-process (`panda_cli.main.main`, output captured); `panda job watch`
runs as a subprocess where it has to be following a job before a pilot takes it."""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from panda.server.v1 import job_pb2, job_service_pb2
from panda_cli.main import main
from tests.cli_support import Result
from tests.server_support import get_job, wait_for
from tools.cluster import ServerHandle, free_port

J = job_pb2.Job
EXAMPLE_JOBS = Path(__file__).resolve().parents[1] / "examples" / "jobs.yaml"
UNREACHABLE = "cannot reach the server at {} (is `panda up` running? set PANDA_SERVER or --server)"




Panda = Callable[..., Result]


@pytest.fixture
def panda(server: ServerHandle, capsys: pytest.CaptureFixture[str]) -> Panda:
    """`panda --server ADDR ARGS...` in-process: exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(["--server", server.address, *argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


class CliProcess:
    """`panda ...` as a subprocess in its own process group; stdout read line by line."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "panda_cli.main", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.out: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next_line(self, timeout: float = 30.0) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.process.args} in {timeout} s") from None
        assert line is not None, f"{self.process.args} ended without another line"
        self.out.append(line)
        return line

    def finish(self, timeout: float = 60.0) -> tuple[int, list[str], str]:
        """Exit code, every stdout line, stderr."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.process.args} still running after {timeout} s; printed {self.out}") from None
        self._reader.join(10)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.out.append(line)
        assert self.process.stderr is not None
        return code, self.out, self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def cli_process(server: ServerHandle) -> Iterator[Callable[..., CliProcess]]:
    started: list[CliProcess] = []

    def start(*argv: str) -> CliProcess:
        process = CliProcess(["--server", server.address, *argv])
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def adler32_of(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def job_id_from(result: Result) -> int:
    assert result.code == 0, result.err
    assert result.out.strip().isdigit(), f"submit printed {result.out!r}"
    return int(result.out)


def list_jobs(stub) -> job_service_pb2.ListJobsResponse:  # type: ignore[no-untyped-def]
    """What the server stored, through ListJobs."""
    return stub.ListJobs(job_service_pb2.ListJobsRequest(page_size=100), timeout=10)


def table(text: str) -> list[list[str]]:
    """Rows of a table the CLI printed, split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


def section(text: str, title: str) -> str:
    """The indented lines under `title:` in `panda job show`."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    body = []
    for line in lines[start:]:
        if line and not line.startswith("  "):
            break
        body.append(line)
    return "\n".join(body).strip("\n")


def field(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no field {name!r} in:\n{text}")


def watched_states(lines: list[str]) -> list[tuple[str, str]]:
    """(state, attempt) of each `panda job watch` line: `DATE TIME ZONE  STATE  attempt N  reason`."""
    result = []
    for line in lines:
        parts = line.split()
        assert parts[4] == "attempt", line
        result.append((parts[3], parts[5]))
    return result


# --- queues ------------------------------------------------------------------------------


def test_queue_add_list_show_and_set_status(panda: Panda) -> None:
    empty = panda("queue", "list")
    assert (empty.code, empty.out) == (0, "no queues (add one with: panda queue add NAME)\n")
    # A queue names a configured storage element, never a URL.
    assert panda("se", "add", "b", "file:///se/b").out == "created storage element b (file:///se/b)\n"
    # Changing it: only what is given changes, and --every-queue opens it again.
    fenced = panda("se", "set", "b", "--queue", "x-queue", "--vo", "atlas", "--json")
    assert fenced.code == 0, fenced.err
    assert (json.loads(fenced.out)["queues"], json.loads(fenced.out)["vos"]) == (["x-queue"], ["atlas"])
    opened = panda("se", "set", "b", "--every-queue", "--description", "shared")
    assert opened.code == 0 and "every queue" in opened.out and "atlas" in opened.out and "shared" in opened.out
    nothing = panda("se", "set", "b")
    assert nothing.code == 2 and "nothing to change" in nothing.err
    assert panda("se", "set", "nowhere", "--url", "file:///se/n").code == 3
    by_url = panda("queue", "add", "c-queue", "--storage-element", "file:///se/b")
    assert (by_url.code, by_url.out) == (1, "")
    assert "INVALID_ARGUMENT" in by_url.err and "not by a URL" in by_url.err

    added = panda(
        "queue",
        "add",
        "b-queue",
        "--cores",
        "8",
        "--memory",
        "16000",
        "--walltime",
        "2h",
        "--storage-element",
        "b",
        "--status",
        "test",
        "--description",
        "big jobs",
    )
    assert (added.code, added.out, added.err) == (0, "created queue b-queue (test)\n", "")
    assert panda("queue", "add", "a-queue").out == "created queue a-queue (online)\n"

    again = panda("queue", "add", "a-queue")
    assert (again.code, again.out, again.err) == (1, "", "panda: ALREADY_EXISTS: queue a-queue already exists\n")

    listed = panda("queue", "list")
    assert listed.code == 0
    rows = table(listed.out)
    assert rows[0] == ["ID", "STATUS", "CORES", "MEMORY", "WALLTIME", "SE", "JOBS", "PILOTS"]
    assert rows[1:] == [
        ["a-queue", "online", "-", "-", "-", "-", "-", "0"],
        ["b-queue", "test", "8", "16000 MB", "2h", "b", "-", "0"],
    ]

    shown = panda("queue", "show", "b-queue")
    assert shown.code == 0
    assert [
        field(shown.out, k)
        for k in (
            "queue",
            "status",
            "description",
            "storage element",
            "max cores",
            "max memory",
            "max walltime",
            "max disk",
        )
    ] == ["b-queue", "test", "big jobs", "b", "8", "16000 MB", "2h", "no limit"]
    as_json = panda("queue", "show", "a-queue", "--json")
    assert as_json.code == 0
    data = json.loads(as_json.out)
    assert (data["queue_id"], data["status"]) == ("a-queue", "STATUS_ONLINE")

    offline = panda("queue", "set-status", "b-queue", "OFFLINE")
    assert (offline.code, offline.out) == (0, "queue b-queue is now offline\n")
    assert field(panda("queue", "show", "b-queue").out, "status") == "offline"
    only_offline = panda("queue", "list", "--status", "offline")
    assert [row[0] for row in table(only_offline.out)[1:]] == ["b-queue"]

    bad_status = panda("queue", "set-status", "b-queue", "sleeping")
    assert bad_status.code == 2
    assert bad_status.err == ("panda: unknown queue status 'sleeping' (choose from online, offline, test, brokeroff)\n")
    assert field(panda("queue", "show", "b-queue").out, "status") == "offline"

    missing = panda("queue", "set-status", "nosuch", "offline")
    assert (missing.code, missing.err) == (3, "panda: NOT_FOUND: queue nosuch not found\n")
    missing = panda("queue", "show", "nosuch")
    assert (missing.code, missing.out, missing.err) == (3, "", "panda: NOT_FOUND: queue nosuch not found\n")


def test_se_add_list_show(panda: Panda, tmp_path: Path, identity, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    assert panda("se", "list").out == "no storage elements (an admin adds one with: panda se add NAME file:///PATH)\n"
    added = panda("se", "add", "site-a", f"file://{tmp_path}/a", "--queue", "q1", "--queue", "q2", "--vo", "atlas",
                  "--description", "tape buffer")
    assert (added.code, added.out) == (0, f"created storage element site-a (file://{tmp_path}/a)\n")
    assert panda("se", "add", "site-b", f"file://{tmp_path}/b").code == 0
    rows = table(panda("se", "list").out)
    assert rows == [["ID", "URL", "QUEUES", "VOS", "DESCRIPTION"],
                    ["site-a", f"file://{tmp_path}/a", "q1, q2", "atlas", "tape buffer"],
                    ["site-b", f"file://{tmp_path}/b", "*", "*", "-"]]
    shown = panda("se", "show", "site-a")
    assert [field(shown.out, k) for k in ("storage element", "url", "queues", "vos")] == [
        "site-a", f"file://{tmp_path}/a", "q1, q2", "atlas"]
    as_json = json.loads(panda("se", "show", "site-b", "--json").out)
    assert (as_json["name"], as_json["url"]) == ("storageElements/site-b", f"file://{tmp_path}/b")
    inside = panda("se", "add", "site-c", f"file://{tmp_path}/a/c")
    assert inside.code == 1 and "INVALID_ARGUMENT" in inside.err and "overlaps storage element site-a" in inside.err
    missing = panda("se", "show", "nosuch")
    assert (missing.code, missing.err) == (3, "panda: NOT_FOUND: storage element nosuch not found\n")
    # Only admins configure them; anyone signed in reads them.
    monkeypatch.setenv("PANDA_TOKEN", identity.token("alice"))
    denied = panda("se", "add", "mine", f"file://{tmp_path}/mine")
    assert denied.code == 4 and "PERMISSION_DENIED" in denied.err
    assert [row[0] for row in table(panda("se", "list").out)[1:]] == ["site-a", "site-b"]


# --- submit, watch, show -----------------------------------------------------------------


def test_submit_watch_and_show_a_job_with_an_output_file(  # type: ignore[no-untyped-def]
    panda: Panda, cli_process, local_queue, storage_dir: Path, start_pilot, jobs_stub
) -> None:
    submitted = panda(
        "submit",
        "--queue",
        "local",
        "--output",
        "hello.txt",
        "--",
        "/bin/sh",
        "-c",
        "echo hello from $PANDA_JOB_ID > hello.txt; echo wrote hello.txt",
    )
    assert submitted.err == ""
    job_id = job_id_from(submitted)

    # Watch from before a pilot exists, so the watch follows the whole run.
    watch = cli_process("job", "watch", str(job_id))
    first = watch.next_line()
    assert first.split()[3:] == ["activated", "attempt", "1", "submitted"]
    start_pilot()
    code, lines, err = watch.finish()
    assert code == 0, (lines, err)
    states = watched_states(lines)
    assert [s for s, _ in states] == ["activated", "sent", "starting", "running", "finished"]
    assert {attempt for _, attempt in states} == {"1"}
    assert lines[-1].endswith("finished, 1 output file(s) registered")

    stored = storage_dir / "user.admin" / "hello.txt"
    assert stored.read_text() == f"hello from {job_id}\n"
    shown = panda("job", "show", str(job_id))
    assert shown.code == 0
    assert field(shown.out, "job") == str(job_id)
    assert field(shown.out, "state") == "finished"
    assert field(shown.out, "queue") == "local"
    assert field(shown.out, "command") == "/bin/sh -c 'echo hello from $PANDA_JOB_ID > hello.txt; echo wrote hello.txt'"
    assert field(shown.out, "exit code") == "0"
    files = table(section(shown.out, "files"))
    assert files == [
        ["KIND", "LFN", "SIZE", "ADLER32", "STATUS", "SE"],
        ["output", "user.admin:hello.txt", f"{stored.stat().st_size} B", adler32_of(stored), "ready", "local"],
    ]
    history = table(section(shown.out, "history"))
    assert history[0] == ["TIME", "STATE", "ATTEMPT", "REASON"]
    assert [row[1] for row in history[1:]] == ["activated", "sent", "starting", "running", "finished"]
    assert "wrote hello.txt" in section(shown.out, "log tail")

    as_json = json.loads(panda("job", "show", str(job_id), "--json").out)
    assert as_json["state"] == "STATE_FINISHED"
    (output,) = as_json["files"]
    assert (output["lfn"], int(output["size_bytes"]), output["adler32"]) == (
        "hello.txt",
        stored.stat().st_size,
        adler32_of(stored),
    )

    # Watching a job that has ended prints the states it went through and returns at once.
    again = panda("job", "watch", str(job_id))
    assert again.code == 0
    assert watched_states(again.lines()) == states

    # Each submission is a job of its own, even of the same command.
    first_json = panda("submit", "--json", "--queue", "local", "--", "true")
    second_json = panda("submit", "--json", "--queue", "local", "--", "true")
    ids = [json.loads(r.out)["job_id"] for r in (first_json, second_json)]
    assert all(isinstance(i, int) for i in ids) and len(set(ids) | {job_id}) == 3
    for other in ids:
        wait_for(jobs_stub, other)

    queues = table(panda("queue", "list").out)
    assert queues[1][0] == "local"
    assert queues[1][-2:] == ["finished=3", "1"]  # JOBS and PILOTS


def test_submit_a_file_of_jobs(  # type: ignore[no-untyped-def]
    panda: Panda, local_queue, storage_dir: Path, tmp_path: Path, start_pilot, jobs_stub
) -> None:
    # The README's example file, as the tour submits it.
    result = panda("submit", "-f", str(EXAMPLE_JOBS))
    assert (result.code, result.err) == (0, "")
    stored = {job.job_id: job for job in list_jobs(jobs_stub).jobs}
    examples = sorted(stored)
    assert len(examples) == 3
    # One line: how many, and their ids (consecutive ones as a range).
    assert result.out == f"submitted 3 jobs: {examples[0]}-{examples[2]}\n"
    assert [stored[i].label for i in examples] == ["count-words", "compress", "high-priority-echo"]
    assert [[f.lfn for f in stored[i].files] for i in examples] == [["words.txt"], ["numbers.gz"], []]
    compress = stored[examples[1]].resources
    assert (compress.memory_mb, compress.walltime_seconds) == (500, 600)
    assert (stored[examples[2]].priority, stored[examples[2]].max_attempts) == (100, 1)

    # Flags give defaults for what a job leaves out; --json gives all the ids.
    jobs_file = tmp_path / "jobs.yaml"
    jobs_file.write_text(
        "- {queue: local, command: echo one, label: first}\n"
        "- {command: [sh, -c, 'echo two'], priority: 5}\n"
        "- command: echo three\n"
        "  max_attempts: 1\n"
    )
    as_json = panda("submit", "-f", str(jobs_file), "--queue", "local", "--priority", "2", "--json")
    assert (as_json.code, as_json.err) == (0, "")
    ids = json.loads(as_json.out)["job_ids"]
    assert len(ids) == 3 and not set(ids) & set(examples)
    stored = {job.job_id: job for job in list_jobs(jobs_stub).jobs}
    assert len(stored) == 6
    assert [list(stored[i].command) for i in ids] == [["echo", "one"], ["sh", "-c", "echo two"], ["echo", "three"]]
    assert [stored[i].queue for i in ids] == ["local"] * 3
    assert [stored[i].priority for i in ids] == [2, 5, 2]
    assert (stored[ids[0]].label, stored[ids[2]].max_attempts) == ("first", 1)

    start_pilot()
    for job_id in examples + ids:
        done = wait_for(jobs_stub, job_id)
        assert done.state == J.STATE_FINISHED, (job_id, done.error_diag)
    assert (storage_dir / "user.admin" / "words.txt").read_text().strip() == "4"
    assert gzip.decompress((storage_dir / "user.admin" / "numbers.gz").read_bytes()).decode().split() == [
        str(i) for i in range(1, 100001)
    ]


def test_a_bad_jobs_file_stores_nothing(panda: Panda, local_queue, tmp_path: Path, jobs_stub) -> None:  # type: ignore[no-untyped-def]
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("jobs:\n  - {queue: local, command: echo 1\n")
    result = panda("submit", "-f", str(not_yaml))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"panda: {not_yaml}: not valid YAML at line 3")
    assert result.err.count("\n") == 1

    second_bad = tmp_path / "second.yaml"
    second_bad.write_text("- {queue: local, command: echo 1}\n- {queue: local, cores: lots, command: echo 2}\n")
    result = panda("submit", "-f", str(second_bad))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"panda: {second_bad}: job 2: ")

    # Valid YAML, but the server refuses the second job: the first is not stored either.
    unknown_queue = tmp_path / "queue.yaml"
    unknown_queue.write_text("- {queue: local, command: echo 1}\n- {queue: nosuch, command: echo 2}\n")
    result = panda("submit", "-f", str(unknown_queue))
    assert (result.code, result.out) == (3, "")
    assert result.err.startswith("panda: NOT_FOUND: ") and "nosuch" in result.err

    result = panda("submit", "-f", str(tmp_path / "missing.yaml"))
    assert result.code == 1
    assert result.err == f"panda: cannot read {tmp_path / 'missing.yaml'}: No such file or directory\n"

    assert list_jobs(jobs_stub).total_size == 0
    assert panda("jobs").out == "no jobs\nshowing 0 of 0\n"


def test_submit_to_an_unknown_queue_and_show_an_unknown_job(panda: Panda, local_queue, jobs_stub) -> None:  # type: ignore[no-untyped-def]
    result = panda("submit", "--queue", "nosuch", "--", "true")
    assert (result.code, result.out) == (3, "")
    assert result.err.startswith("panda: NOT_FOUND: ") and "queue nosuch not found" in result.err
    assert result.err.count("\n") == 1
    assert list_jobs(jobs_stub).total_size == 0

    for command in (["job", "show", "999999"], ["job", "watch", "999999"]):
        result = panda(*command)
        assert (result.code, result.out, result.err) == (3, "", "panda: NOT_FOUND: job 999999 not found\n")


# --- watch exit codes --------------------------------------------------------------------


def test_watch_exit_code_follows_the_final_state(  # type: ignore[no-untyped-def]
    panda: Panda, cli_process, local_queue, start_pilot
) -> None:
    failing = job_id_from(
        panda(
            "submit",
            "--queue",
            "local",
            "--max-attempts",
            "1",
            "--",
            "/bin/sh",
            "-c",
            "echo 'segment 7 is corrupt' >&2; exit 3",
        )
    )
    # Fails on its first attempt and finishes on its second.
    retried = job_id_from(
        panda("submit", "--queue", "local", "--max-attempts", "2", "--", "/bin/sh", "-c", 'test "$PANDA_ATTEMPT" -ge 2')
    )
    watch_failing = cli_process("job", "watch", str(failing), "--json")
    watch_retried = cli_process("job", "watch", str(retried))
    watch_failing.next_line()
    watch_retried.next_line()
    start_pilot()

    code, lines, _ = watch_failing.finish()
    events = [json.loads(line) for line in lines]
    assert code == 6
    assert events[0]["state"] == "STATE_ACTIVATED" and events[-1]["state"] == "STATE_FAILED"
    assert (events[-1]["error_code"], events[-1]["reason"]) == (1305, "payload exited with code 3")

    code, lines, _ = watch_retried.finish()
    assert code == 0, lines
    states = watched_states(lines)
    assert ("failed", "1") in states and ("activated", "2") in states
    assert states.index(("failed", "1")) < states.index(("activated", "2"))
    assert states[-1] == ("finished", "2")

    shown = panda("job", "show", str(failing))
    assert field(shown.out, "state") == "failed"
    assert field(shown.out, "exit code") == "3"
    assert field(shown.out, "error") == "1305: payload exited with code 3"
    assert "segment 7 is corrupt" in section(shown.out, "log tail")
    assert panda("job", "watch", str(failing)).code == 6


def test_watch_resumes_across_a_server_restart(  # type: ignore[no-untyped-def]
    server: ServerHandle, panda: Panda, cli_process, local_queue, start_pilot, jobs_stub
) -> None:
    job_id = job_id_from(panda("submit", "--queue", "local", "--", "sleep", "6"))
    start_pilot()
    wait_for(jobs_stub, job_id, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    watch = cli_process("job", "watch", str(job_id))
    # What it went through before the watch began, then on.
    assert [watch.next_line().split()[3] for _ in range(4)] == ["activated", "sent", "starting", "running"]
    server.kill()
    time.sleep(1.0)
    # The restarted server's watchdog counts the downtime as the pilot's silence; with the
    # tests' 4 s heartbeat timeout it could fail the job before the pilot reconnects.
    server.env["PANDA_HEARTBEAT_TIMEOUT_SECONDS"] = "60"
    server.start()  # same address and database
    code, lines, err = watch.finish(timeout=90)
    assert code == 0, (lines, err)
    assert "watch stream interrupted" in err and "resuming" in err
    assert [s for s, _ in watched_states(lines)] == ["activated", "sent", "starting", "running", "finished"], lines


# --- listing -----------------------------------------------------------------------------


def test_jobs_table_json_filters_and_paging(panda: Panda, local_queue, start_pilot, jobs_stub) -> None:  # type: ignore[no-untyped-def]
    assert panda("queue", "add", "idle").code == 0  # no pilot serves it: its job stays activated
    finished = [job_id_from(panda("submit", "--queue", "local", "--", "echo", str(i))) for i in range(3)]
    waiting = job_id_from(panda("submit", "--queue", "idle", "--", "echo", "later"))
    start_pilot()
    for job_id in finished:
        assert wait_for(jobs_stub, job_id).state == J.STATE_FINISHED

    newest_first = sorted(finished, reverse=True)
    result = panda("jobs", "--state", "finished")
    assert result.code == 0
    rows = table(result.out)
    assert rows[0] == ["ID", "STATE", "QUEUE", "ATTEMPT", "PRIO", "ERROR", "LABEL/COMMAND", "UPDATED"]
    assert [int(row[0]) for row in rows[1:-1]] == newest_first
    assert {tuple(row[1:6]) for row in rows[1:-1]} == {("finished", "local", "1/3", "0", "-")}
    assert [row[6] for row in rows[1:-1]] == ["echo 2", "echo 1", "echo 0"]
    assert rows[-1] == ["showing 3 of 3"]

    everything = table(panda("jobs").out)
    assert [int(row[0]) for row in everything[1:-1]] == [waiting, *newest_first]
    assert everything[1][1:3] == ["activated", "idle"]

    as_json = panda("jobs", "--state", "finished", "--json")
    assert as_json.code == 0
    data = json.loads(as_json.out)
    assert [int(job["job_id"]) for job in data["jobs"]] == newest_first
    assert {job["state"] for job in data["jobs"]} == {"STATE_FINISHED"}
    assert int(data["total_size"]) == 3 and not data.get("next_page_token")

    page_one = panda("jobs", "--state", "finished", "--limit", "2")
    *table_text, footer = page_one.lines()
    assert [int(row[0]) for row in table("\n".join(table_text))[1:]] == newest_first[:2]
    prefix = "showing 2 of 3; next page: same command with --page-token "
    assert footer.startswith(prefix)
    token = footer.removeprefix(prefix)
    page_two = panda("jobs", "--state", "finished", "--limit", "2", "--page-token", token)
    assert page_two.code == 0
    assert [int(row[0]) for row in table(page_two.out)[1:-1]] == newest_first[2:]
    assert page_two.lines()[-1] == "showing 1 of 3"

    assert panda("jobs", "--queue", "idle").lines()[-1] == "showing 1 of 1"
    assert panda("jobs", "--since", "1h").lines()[-1] == "showing 4 of 4"
    nobody = panda("jobs", "--owner", "bob")
    assert (nobody.code, nobody.out) == (0, 'no jobs match owner = "bob"\nshowing 0 of 0\n')

    bad_state = panda("jobs", "--state", "sleeping")
    assert bad_state.code == 2 and bad_state.err.startswith("panda: unknown state 'sleeping' (choose from ")
    bad_since = panda("jobs", "--since", "yesterday")
    assert bad_since.code == 2 and bad_since.err.startswith("panda: --since 'yesterday': ")
    bad_token = panda("jobs", "--page-token", "garbage")
    assert (bad_token.code, bad_token.out) == (1, "")
    assert bad_token.err.startswith("panda: INVALID_ARGUMENT: ")


def test_job_count_and_jobs_sorted(panda: Panda, local_queue) -> None:  # type: ignore[no-untyped-def]
    assert panda("queue", "add", "idle").code == 0  # no pilot anywhere: jobs stay activated
    low, high, middle = (job_id_from(panda("submit", "--queue", "local", "--priority", str(p), "--", "true"))
                         for p in (1, 9, 5))
    idle = job_id_from(panda("submit", "--queue", "idle", "--", "true"))
    assert panda("job", "kill", str(low)).code == 0

    counted = panda("job", "count", "--by", "state,queue")
    assert counted.code == 0, counted.err
    assert table(counted.out) == [["STATE", "QUEUE", "JOBS", "SHARE"], ["activated", "local", "2", "50.0%"],
                                  ["activated", "idle", "1", "25.0%"],
                                  ["cancelled", "local", "1", "25.0%"], ["4 jobs"]]
    assert panda("job", "count").out == "4 jobs\n"
    top = panda("job", "count", "--by", "queue", "--limit", "1")
    assert top.lines()[-1] == "4 jobs; 1 in groups not shown (--limit to see more)"
    either = panda("job", "count", "--by", "queue", "--filter", 'queue = "idle" OR state = cancelled')
    assert table(either.out)[1:] == [["idle", "1", "50.0%"], ["local", "1", "50.0%"], ["2 jobs"]]
    mixed = panda("job", "count", "--by", "state", "--queue", "local", "--filter", "priority > 1 OR state = cancelled")
    assert table(mixed.out)[1:] == [["activated", "2", "66.7%"],
                                    ["cancelled", "1", "33.3%"], ["3 jobs"]]
    as_json = json.loads(panda("job", "count", "--by", "state", "--json").out)
    assert as_json["group_by"] == ["state"] and int(as_json["total_size"]) == 4
    assert as_json["groups"][0] == {"values": ["STATE_ACTIVATED"], "count": "3"}
    refused = panda("job", "count", "--by", "state,command")
    assert refused.code == 1 and refused.err.startswith("panda: INVALID_ARGUMENT: ")
    assert "cannot group by 'command'" in refused.err

    by_priority = table(panda("jobs", "--order-by", "priority desc").out)
    assert [int(row[0]) for row in by_priority[1:-1]] == [high, middle, low, idle]
    oldest = table(panda("jobs", "--order-by", "job_id", "--limit", "2").out)
    assert [int(row[0]) for row in oldest[1:-1]] == [low, high]
    bad_order = panda("jobs", "--order-by", "command")
    assert bad_order.code == 1 and "cannot sort by 'command'" in bad_order.err


# --- kill and reassign -------------------------------------------------------------------


def test_kill_a_running_job_a_queued_one_and_an_unknown_one(  # type: ignore[no-untyped-def]
    panda: Panda, local_queue, start_pilot, jobs_stub
) -> None:
    running = job_id_from(panda("submit", "--queue", "local", "--", "sleep", "300"))
    start_pilot()
    wait_for(jobs_stub, running, lambda j: j.state == J.STATE_RUNNING, 30, "running")
    result = panda("job", "kill", str(running))
    assert (result.code, result.out, result.err) == (0, f"{running}  kill sent (running)\n", "")
    assert wait_for(jobs_stub, running, timeout=30).state == J.STATE_CANCELLED
    shown = panda("job", "show", str(running))
    assert field(shown.out, "state") == "cancelled"
    assert table(section(shown.out, "history"))[-1][1] == "cancelled"
    watched = panda("job", "watch", str(running))
    assert watched.code == 6 and watched_states(watched.lines())[-1] == ("cancelled", "1")

    assert panda("queue", "add", "idle").code == 0
    queued = job_id_from(panda("submit", "--queue", "idle", "--", "true"))
    result = panda("job", "kill", str(queued), "--reason", "wrong input")
    assert (result.code, result.out) == (0, f"{queued}  cancelled\n")
    history = table(section(panda("job", "show", str(queued)).out, "history"))
    assert history[-1][1:] == ["cancelled", "1", "wrong input"]

    result = panda("job", "kill", "999999")
    assert (result.code, result.out) == (1, "999999  refused: NOT_FOUND: job 999999 not found\n")
    # One refusal among several: every job gets its line, and the exit code is 1.
    again = job_id_from(panda("submit", "--queue", "idle", "--", "true"))
    result = panda("job", "kill", str(again), "999999")
    assert result.code == 1
    assert [line.split(maxsplit=1) for line in result.lines()] == [
        [str(again), "cancelled"],
        ["999999", "refused: NOT_FOUND: job 999999 not found"],
    ]
    assert get_job(jobs_stub, again).state == J.STATE_CANCELLED


def test_reassign_a_job_that_has_not_started(panda: Panda, local_queue, jobs_stub) -> None:  # type: ignore[no-untyped-def]
    assert panda("queue", "add", "other").code == 0
    job_id = job_id_from(panda("submit", "--queue", "local", "--", "true"))  # no pilot: it waits
    result = panda("job", "reassign", str(job_id), "--queue", "other")
    assert (result.code, result.out) == (0, f"{job_id}  reassigned to other (activated)\n")
    shown = panda("job", "show", str(job_id))
    assert field(shown.out, "queue") == "other"
    assert table(section(shown.out, "history"))[-1][1:] == ["activated", "1", "reassigned from local to other"]

    result = panda("job", "reassign", str(job_id), "--queue", "nosuch")
    assert (result.code, result.err) == (3, "panda: NOT_FOUND: queue nosuch not found\n")
    assert get_job(jobs_stub, job_id).queue == "other"

    assert panda("job", "kill", str(job_id)).code == 0
    result = panda("job", "reassign", str(job_id), "--queue", "local")
    assert result.code == 1
    assert result.out.startswith(f"{job_id}  refused: FAILED_PRECONDITION: job {job_id} is cancelled")


# --- no server ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["queue", "list"],
        ["jobs"],
        ["job", "show", "1"],
        ["job", "watch", "1"],
        ["job", "kill", "1"],
        ["submit", "--queue", "local", "--", "true"],
    ],
)
def test_no_server_is_one_line_and_exit_5(command: list[str]) -> None:
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    by_flag = subprocess.run(
        [sys.executable, "-m", "panda_cli.main", "--server", address, *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (by_flag.returncode, by_flag.stdout) == (5, "")
    assert by_flag.stderr == f"panda: {UNREACHABLE.format(address)}\n"

    by_env = subprocess.run(
        [sys.executable, "-m", "panda_cli.main", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PANDA_SERVER": address},
    )
    assert (by_env.returncode, by_env.stderr) == (5, f"panda: {UNREACHABLE.format(address)}\n")
