"""`panda dataset ...`, `panda task ...` and `panda tasks`: task files parsed without a service,
then the README's task tour against a real server, JEDI and pilot (examples/task.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from panda_cli.main import main
from panda_cli.specs import SpecError
from panda_cli.task_specs import build_task_filter, task_from_yaml
from tests.jedi_support import adler32_of

pytest_plugins = ["tests.jedi_fixtures"]
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "task.yaml"
# What makes rich take a pipe for a terminal a person looks at.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "TERM": "xterm-256color", "COLUMNS": "200"}


def test_the_example_task_file_parses() -> None:
    params = task_from_yaml(EXAMPLE.read_text(), source=str(EXAMPLE))
    assert params.task_name == "user.me.demo.count" and params.owner == ""  # the caller owns it
    assert params.transformation[:2] == ["sh", "-c"] and "${IN}" in params.transformation[2]
    assert list(params.input_datasets) == ["user.me.demo"]
    assert params.split_rule.files_per_job == 2
    assert (params.resources.memory_mb, params.resources.walltime_seconds) == (2000, 600)
    assert (params.scout_jobs, params.max_attempts, params.priority) == (2, 3, 100)
    assert params.HasField("scout_jobs")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: run\nsplitt: {}", "splitt: unknown key"),
        ("output_dataset: o\ninput_dataset: i\ntransformation: run", "task_name is required"),
        ("task_name: x\ninput_dataset: i\ntransformation: run", "output_dataset is required"),
        ("task_name: x\noutput_dataset: o\ntransformation: run", "input_datasets is required"),
        ("task_name: x\noutput_dataset: o\ninput_dataset: i", "transformation is required"),
        ("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: t\nsplit: {files_per_job: 0}",
         "at least 1"),
        ("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: t\nsplit: {nfiles: 2}",
         "split must be one of"),
        ("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: t\nresources: {ram: 2}",
         "resources.ram: unknown"),
        ("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: t\nresources: {walltime: soon}",
         "not a duration"),
        ("- a list", "expected a mapping"),
    ],
)
def test_bad_task_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        task_from_yaml(text, source="t.yaml")


def test_task_files_take_lists_events_and_sizes() -> None:
    params = task_from_yaml(
        "task_name: x\noutput_dataset: o\ninput_datasets: [a, b]\ntransformation: [run, '${IN}', 3]\n"
        "split: {gb_per_job: 2.5}\nqueues: q1\nexcluded_queues: [q2]\nenvironment: {A: 1}\nmax_failure_rate: 1\n")
    assert list(params.transformation) == ["run", "${IN}", "3"] and params.split_rule.gb_per_job == 2.5
    assert list(params.queues) == ["q1"] and list(params.excluded_queues) == ["q2"]
    assert dict(params.environment) == {"A": "1"} and params.max_failure_rate == 1.0
    assert task_from_yaml("task_name: x\noutput_dataset: o\ninput_dataset: i\ntransformation: t\n"
                          "split: {events_per_job: 500}").split_rule.events_per_job == 500


def test_task_filter_from_flags() -> None:
    assert build_task_filter(state="running", owner="al\"ice", name="mc23.*") == (
        'state = RUNNING AND owner = "al\\"ice" AND task_name = "mc23.*"')
    assert build_task_filter() == ""
    assert build_task_filter(owner="bob", not_states=["done", "failed"]) == (
        'state != DONE AND state != FAILED AND owner = "bob"')


def test_the_task_tour(jedi, server, local_queue, storage_dir: Path, start_pilot, tmp_path: Path,  # type: ignore[no-untyped-def]
                       capsys) -> None:
    def panda(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.MonkeyPatch.context() as env:
            # Not --server: the task commands call JEDI only, and take only --jedi.
            env.setenv("PANDA_SERVER", server.address)
            code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(1, 7):
        (inputs / f"events.{i:02d}.txt").write_text("\n".join(str(n) for n in range(100)) + "\n")
    files = sorted(str(p) for p in inputs.iterdir())
    code, out, err = panda("dataset", "register", "user.me.demo", *files, "--events", "100", "--jedi", jedi.address)
    assert code == 0, err
    assert out.strip() == "dataset user.me.demo: 6 file(s), 1.7 KiB, 600 event(s), in scope user.admin on local"
    # Off a terminal, how far it is: plain lines on stderr.
    assert err.splitlines() == [*(f"copying and checksumming: {n}/6 files" for n in range(1, 7)),
                                "registering 6 files with JEDI..."]
    # At a terminal, bars (rich's TTY_COMPATIBLE makes the pipe one).
    drawn = subprocess.run(
        [sys.executable, "-m", "panda_cli.main", "--server", server.address, "dataset", "register", "user.me.drawn",
         *files[:2], "--prefix", "drawn.", "--jedi", jedi.address],
        capture_output=True, text=True, timeout=120, env={**os.environ, **TERMINAL})
    assert drawn.returncode == 0, drawn.stderr
    assert "\x1b[" in drawn.stderr and "2/2 files" in drawn.stderr and "registering 2 files with JEDI" in drawn.stderr
    assert drawn.stdout.startswith("dataset user.me.drawn: 2 file(s)")
    copied = storage_dir / "user.admin" / "events.01.txt"
    assert copied.read_bytes() == (inputs / "events.01.txt").read_bytes()
    # On a named element, in the VO's scope (the admin may write it), never over a file there.
    code, out, err = panda("dataset", "register", "panda.demo", *files[:2], "--se", "local", "--scope", "panda",
                           "--prefix", "vo.", "--json", "--jedi", jedi.address)
    assert code == 0 and json.loads(out)["scope"] == "panda", err
    assert (storage_dir / "panda" / "vo.events.01.txt").read_bytes() == copied.read_bytes()
    (storage_dir / "panda" / "vo.events.03.txt").write_text("other contents\n")
    code, out, err = panda("dataset", "register", "panda.other", files[2], "--se", "local", "--scope", "panda",
                           "--prefix", "vo.", "--jedi", jedi.address)
    assert code == 1 and "panda:vo.events.03.txt exists" in err
    assert (storage_dir / "panda" / "vo.events.03.txt").read_text() == "other contents\n"
    code, out, err = panda("dataset", "register", "x", files[0], "--se", "file:///etc", "--jedi", jedi.address)
    assert code == 1 and "not by a URL" in err

    start_pilot()
    code, out, err = panda("task", "submit", "-f", str(EXAMPLE), "--jedi", jedi.address)
    assert code == 0, err
    task_id = int(out)
    # Followed off a terminal: the events on stdout, the counts in plain lines on stderr, the last where it ended.
    code, out, err = panda("task", "watch", str(task_id), "--jedi", jedi.address)
    assert code == 0, out + err
    assert "scouting -> scouted" in out and out.splitlines()[-1].split()[3:6] == ["running", "->", "done"]
    assert "\x1b[" not in out + err
    assert err.splitlines()[-1] == (f"task {task_id} done: 6 done, 0 failed, 0 running, 0 waiting, 0 cancelled, "
                                    "of 6 file(s); jobs: finished=3")
    # At a terminal: the counts drawn live, with a bar of the files done.
    watched = subprocess.run(
        [sys.executable, "-m", "panda_cli.main", "task", "watch", str(task_id), "--jedi", jedi.address],
        capture_output=True, text=True, timeout=300, env={**os.environ, **TERMINAL})
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert "\x1b[" in watched.stderr and "scouting -> scouted" in watched.stderr and "6/6" in watched.stderr
    assert f"task {task_id} done: 6 done, 0 failed, 0 running, 0 waiting, 0 cancelled, of 6 file(s)" in watched.stderr

    code, out, _ = panda("task", "show", str(task_id), "--jedi", jedi.address)
    assert code == 0
    for expected in ["state:           done", "progress:        6 done, 0 failed, 0 running, 0 waiting",
                     "jobs:            finished=3", "scouts:          2 job(s): 2 succeeded, 0 failed; measured",
                     "history:", "ready -> scouting"]:
        assert expected in out, out
    code, out, _ = panda("tasks", "--state", "done", "--owner", "admin", "--jedi", jedi.address)
    assert code == 0 and out.splitlines()[1].split()[:3] == [str(task_id), "user.me.demo.count", "done"]
    code, out, _ = panda("tasks", "--json", "--name", "user.me.*", "--jedi", jedi.address)
    assert [t["task_id"] for t in json.loads(out)["tasks"]] == [str(task_id)]
    code, out, _ = panda("tasks", "--json", "--order-by", "priority desc, task_name", "--jedi", jedi.address)
    assert code == 0 and [t["task_id"] for t in json.loads(out)["tasks"]] == [str(task_id)]
    code, out, err = panda("tasks", "--order-by", "queues", "--jedi", jedi.address)
    assert code == 1 and "cannot sort by 'queues'" in err

    code, out, _ = panda("dataset", "show", "user.me.demo.count.v1", "--json", "--jedi", jedi.address)
    shown = json.loads(out)
    assert shown["dataset"]["file_count"] == "3"
    for f in shown["files"]:
        data = (storage_dir / f["scope"] / f["lfn"]).read_bytes()
        assert f["adler32"] == adler32_of(data) and int(f["size_bytes"]) == len(data)
    code, out, _ = panda("dataset", "show", "user.me.demo", "--task", str(task_id), "--jedi", jedi.address)
    assert code == 0 and out.count(" finished ") == 6
    code, out, _ = panda("dataset", "list", "--kind", "output", "--jedi", jedi.address)
    assert "user.me.demo.count.v1" in out and "user.me.demo " not in out

    code, out, err = panda("task", "kill", str(task_id), "--jedi", jedi.address)
    assert code == 1 and f"FAILED_PRECONDITION: task {task_id} is done: kill is accepted only" in err
    # A task that ends aborted: `task watch` says so with its exit code.
    aborted = tmp_path / "aborted.yaml"
    aborted.write_text(EXAMPLE.read_text().replace("user.me.demo.count.v1", "user.me.demo.count.v2"))
    code, out, err = panda("task", "submit", "-f", str(aborted), "--jedi", jedi.address)
    assert code == 0, err
    code, _, err = panda("task", "kill", out.strip(), "--jedi", jedi.address)
    assert code == 0, err
    code, out, err = panda("task", "watch", out.strip(), "--jedi", jedi.address)
    assert code == 6 and "aborted" in out.splitlines()[-1], out + err
    code, out, err = panda("task", "priority", str(task_id), "7", "--jedi", jedi.address)
    assert code == 1 and "is done" in err
    code, out, err = panda("task", "show", "999", "--jedi", jedi.address)
    assert code == 3 and "NOT_FOUND: task 999 not found" in err
    code, out, err = panda("tasks", "--jedi", "127.0.0.1:1")
    assert code == 5 and "cannot reach JEDI at 127.0.0.1:1" in err
