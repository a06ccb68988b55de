"""`panda run`, prun's options: the task they make is the one `panda task submit -f` makes of the
equivalent task file (checked without a service), bad options are usage errors naming the
option, and a task submitted with them runs to done with a real pilot, exactly like the task
its `--noSubmit` file makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from panda_cli.main import main, parse_args
from panda_cli.run import task_mapping
from panda_cli.task_specs import task_from_mapping, task_from_yaml
from panda_cli.tasks import monitor_link

pytest_plugins = ["tests.jedi_fixtures"]

# prun's options, and the task file a user would write for the same task (README, "From prun and pbook").
PRUN_OPTIONS = [
    "--exec", "cat $(echo %IN | tr , ' ') | wc -l > %OUT", "--inDS", "user.me.a,user.me.b/", "--outDS", "user.me.wc/",
    "--nFilesPerJob", "2", "--memory", "500", "--nCore", "2", "--maxWalltime", "2", "--priority", "5",
    "--maxAttempt", "2", "--expertOnly_skipScout", "--site", "local,local-b", "--excludedSite", "x1,x2",
    "--excludedSite", "local-small", "--workingGroup", "AP_X", "--vo", "panda",
]
EQUIVALENT_TASK_FILE = """\
task_name: user.me.wc
transformation: ["/bin/sh", "-c", "cat $(echo ${IN_CSV} | tr , ' ') | wc -l > ${OUT}"]
input_datasets: [user.me.a, user.me.b]
output_dataset: user.me.wc
split: {files_per_job: 2}
resources: {cores: 2, memory: 1000, walltime: 2h}    # prun's memory is per core, its walltime in hours
priority: 5
max_attempts: 2
scout_jobs: 0
queues: [local, local-b]
excluded_queues: [x1, x2, local-small]
working_group: AP_X
vo: panda
"""


def run_args(*argv: str):  # type: ignore[no-untyped-def]
    return parse_args(["run", *argv])


def test_prun_options_make_the_task_of_the_equivalent_task_file(capsys: pytest.CaptureFixture[str]) -> None:
    expected = task_from_yaml(EQUIVALENT_TASK_FILE)
    assert task_from_mapping(task_mapping(run_args(*PRUN_OPTIONS))) == expected
    # --noSubmit prints that task file (no service is asked: nothing listens on port 1).
    assert main(["run", *PRUN_OPTIONS, "--noSubmit", "--jedi", "127.0.0.1:1"]) == 0
    printed = capsys.readouterr().out
    assert task_from_yaml(printed) == expected
    assert printed.splitlines()[1] == (
        "transformation: [/bin/sh, -c, 'cat $(echo ${IN_CSV} | tr , '' '') | wc -l > ${OUT}']")
    assert main(["run", *PRUN_OPTIONS, "--noSubmit", "--json", "--jedi", "127.0.0.1:1"]) == 0
    assert task_from_mapping(json.loads(capsys.readouterr().out)) == expected
    # Only what was given: the rest takes JEDI's defaults, as in a task file without those keys.
    assert task_mapping(run_args("--exec", "x", "--inDS", "i", "--outDS", "o")) == {
        "task_name": "o", "transformation": ["/bin/sh", "-c", "x"], "input_datasets": ["i"], "output_dataset": "o"}
    assert task_mapping(run_args("--exec", "x", "--inDS", "i", "--outDS", "o", "--nGBPerJob", "2.5",
                                 "--site", "AUTO"))["split"] == {"gb_per_job": 2.5}
    assert task_mapping(run_args("--exec", "x", "--inDS", "i", "--outDS", "o",
                                 "--nEventsPerJob", "50"))["split"] == {"events_per_job": 50}


@pytest.mark.parametrize(("exec_string", "command"), [
    ("myapp %IN %OUT", "myapp ${IN_CSV} ${OUT}"),
    ("gen --skip=%SKIPEVENTS --n %MAXEVENTS --first %FIRSTEVENT -o %OUT.root", "gen --skip=${SKIP_EVENTS} --n "
                                                                               "${MAX_EVENTS} --first ${FIRST_EVENT} "
                                                                               "-o ${OUT}.root"),
    ("echo %IN > input.txt; date +%Y%m%d >> %OUT", "echo ${IN_CSV} > input.txt; date +%Y%m%d >> ${OUT}"),
    ("cat ${IN} > ${OUT}  # this system's own", "cat ${IN} > ${OUT}  # this system's own"),
])
def test_prun_placeholders_become_this_systems(exec_string: str, command: str) -> None:
    transformation = task_mapping(run_args("--exec", exec_string, "--inDS", "i", "--outDS", "o"))["transformation"]
    assert transformation == ["/bin/sh", "-c", command]


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The error line of `panda run ARGV` (exit 2), nothing sent: nothing listens on port 1."""
    try:
        code = main(["run", "--jedi", "127.0.0.1:1", *argv])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    lines = captured.err.splitlines()
    if lines[0].startswith("usage: "):
        assert lines[0] == "usage: panda run --exec CMD --inDS DATASET --outDS NAME [options]" and len(lines) == 2
    else:
        assert len(lines) == 1
    return lines[-1]


@pytest.mark.parametrize(("first", "second"), [
    (["--nFilesPerJob", "2"], ["--nGBPerJob", "1"]),
    (["--nFilesPerJob", "2"], ["--nEventsPerJob", "100"]),
    (["--nEventsPerJob", "100"], ["--nGBPerJob", "1"]),
])
def test_split_options_exclude_each_other(capsys: pytest.CaptureFixture[str], first: list[str],
                                          second: list[str]) -> None:
    line = usage_error(capsys, "--exec", "x", "--inDS", "i", "--outDS", "o", *first, *second)
    assert line == f"panda run: error: argument {second[0]}: not allowed with argument {first[0]}"


def test_required_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert usage_error(capsys, "--inDS", "i", "--outDS", "o") == (
        "panda run: error: the following arguments are required: --exec")
    assert usage_error(capsys, "--exec", "x", "--outDS", "o") == (
        "panda run: error: the following arguments are required: --inDS")


@pytest.mark.parametrize(("argv", "error"), [
    (["--nFilesPerJob", "0"], "panda run: error: argument --nFilesPerJob: must be at least 1: 0"),
    (["--nGBPerJob", "MAX"], "panda run: error: argument --nGBPerJob: not a number: 'MAX'"),
    (["--nGBPerJob", "-1"], "panda run: error: argument --nGBPerJob: must be a positive number: '-1'"),
    (["--memory", "2GB"], "panda run: error: argument --memory: not a whole number: '2GB'"),
    (["--nFiles", "3"], "panda run: error: unrecognized arguments: --nFiles 3"),  # prun's file limit: none here
    (["--nfilesperjob", "3"], "panda run: error: unrecognized arguments: --nfilesperjob 3"),
    (["--outputs", "out.root"], "panda run: error: unrecognized arguments: --outputs out.root"),
    (["--exec", "echo %RNDM:100 > %OUT"], "panda: --exec: %RNDM has no counterpart here: there is no per-job counter "
                                          "from a base number; ${SERIAL}, the job's serial in the task, may do"),
    (["--exec", "app %IN %IN2 > %OUT"], "panda: --exec: %IN2 is a secondary stream (prun's --secondaryDSs), which "
                                        "does not exist here; a task reads its --inDS datasets through %IN"),
    (["--exec", "app --first %FIRSTEVENT:1000"], "panda: --exec: %FIRSTEVENT:1000: placeholders take no base number "
                                                 "here"),
    (["--exec", " "], "panda: --exec is empty: give the command each job runs, e.g. --exec 'wc -l %IN > %OUT'"),
    (["--outDS", "user.me/out put"], "panda: --outDS: 'user.me/out put' is not a dataset name (letters, digits, "
                                     "'.', '_', '-', ':'; at most 255 characters, starting with a letter or digit)"),
    (["--inDS", "user.me.a,a b"], "panda: --inDS: 'a b' is not a dataset name (letters, digits, '.', '_', '-', ':'; "
                                  "at most 255 characters, starting with a letter or digit)"),
    (["--inDS", ","], "panda: --inDS: give at least one name"),
    (["--site", "local,AUTO"], "panda: --site: AUTO in a list (any queue when the listed ones lack the input) has no "
                               "counterpart here; give the queues, or AUTO alone for any queue"),
    (["--site", "a b"], "panda: --site: 'a b' is not a queue id: 1-64 letters, digits, '_', '-' or '.'"),
    (["--excludedSite", "ABC,OPQ*"], "panda: --excludedSite: OPQ*: wildcards are not supported here; name each queue"),
    (["--maxAttempt", "500"], "panda: --maxAttempt: max_attempts must be between 1 and 100, not 500"),
    (["--priority", "1000000"], "panda: --priority: priority must be within ±100000"),
    (["--nFilesPerJob", "20000"], "panda: --nFilesPerJob: files_per_job must be between 0 and 10,000, not 20,000"),
    (["--workingGroup", "x" * 300], "panda: --workingGroup: working_group is 300 characters long; at most 256"),
])
def test_bad_options_are_usage_errors_naming_the_option(capsys: pytest.CaptureFixture[str], argv: list[str],
                                                        error: str) -> None:
    # A later --exec, --inDS or --outDS replaces the earlier one, as it does in prun.
    assert usage_error(capsys, "--exec", "x", "--inDS", "i", "--outDS", "o", *argv) == error


def test_the_monitor_link() -> None:
    assert monitor_link("", 7) == ""
    assert monitor_link("http://127.0.0.1:8000/task/{task_id}/", 7) == "http://127.0.0.1:8000/task/7/"
    assert monitor_link("http://127.0.0.1:8000/tasks/", 7) == "http://127.0.0.1:8000/tasks/7"


def test_panda_run_submits_a_task_that_runs_to_done(jedi, server, local_queue, storage_dir: Path,  # type: ignore[no-untyped-def]
                                                    start_pilot, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PANDA_SERVER", server.address)  # dataset register's copy asks the server too

    def panda(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*argv, "--jedi", jedi.address])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for i in range(1, 5):
        (inputs / f"lines.{i}.txt").write_text("".join(f"{n}\n" for n in range(10 * i)))
    code, _, err = panda("dataset", "register", "user.me.lines", *sorted(str(p) for p in inputs.iterdir()))
    assert code == 0, err
    options = ["--exec", "cat $(echo %IN | tr , ' ') | wc -l > %OUT", "--inDS", "user.me.lines",
               "--nFilesPerJob", "2", "--memory", "500", "--maxWalltime", "1", "--maxAttempt", "2", "--priority", "5",
               "--site", "local", "--excludedSite", "local-b", "--expertOnly_skipScout", "--workingGroup", "AP_X"]

    monkeypatch.setenv("PANDA_MONITOR_URL", "http://127.0.0.1:8000/task/{task_id}/")
    code, out, err = panda("run", *options, "--outDS", "user.me.lines.wc.1")
    assert code == 0, err
    run_id = int(out)
    assert err == f"monitor: http://127.0.0.1:8000/task/{run_id}/\n"
    monkeypatch.delenv("PANDA_MONITOR_URL")

    # The task file --noSubmit prints, submitted as a file, makes the same task.
    code, task_file, err = panda("run", *options, "--outDS", "user.me.lines.wc.2", "--noSubmit")
    assert code == 0 and err == "", err
    (tmp_path / "task.yaml").write_text(task_file)
    code, out, err = panda("task", "submit", "-f", str(tmp_path / "task.yaml"))
    assert code == 0 and err == "", err  # no monitor configured: no link
    file_id = int(out)

    start_pilot()
    for task_id in (run_id, file_id):
        code, out, err = panda("task", "watch", str(task_id))
        assert code == 0 and "running -> done" in out.splitlines()[-1], out + err
    tasks = {}
    for task_id in (run_id, file_id):
        code, out, _ = panda("task", "show", str(task_id), "--json")
        tasks[task_id] = json.loads(out)
    run_params, file_params = tasks[run_id]["params"], tasks[file_id]["params"]
    assert run_params.pop("output_dataset") == run_params.pop("task_name") == "user.me.lines.wc.1"
    assert file_params.pop("output_dataset") == file_params.pop("task_name") == "user.me.lines.wc.2"
    assert run_params == file_params
    assert run_params["transformation"] == ["/bin/sh", "-c", "cat $(echo ${IN_CSV} | tr , ' ') | wc -l > ${OUT}"]
    assert run_params["split_rule"] == {"files_per_job": 2} and run_params["scout_jobs"] == 0
    assert run_params["resources"] == {"memory_mb": "500", "walltime_seconds": "3600"}  # int64: JSON strings
    assert (run_params["queues"], run_params["excluded_queues"]) == (["local"], ["local-b"])
    assert tasks[run_id]["priority"] == 5

    # pbook's show('fin') and show('run'): ended and active tasks.
    code, out, _ = panda("tasks", "--ended", "--json")
    assert code == 0 and sorted(int(t["task_id"]) for t in json.loads(out)["tasks"]) == [run_id, file_id]
    code, out, _ = panda("tasks", "--active")
    assert code == 0 and out.startswith("no tasks match state != DONE AND state != FINISHED AND state != FAILED")

    # Each job read its two files through %IN and wrote their line count to %OUT.
    code, out, _ = panda("dataset", "show", "user.me.lines.wc.1", "--json")
    files = json.loads(out)["files"]
    assert len(files) == 2
    counts = sorted(int((storage_dir / f["scope"] / f["lfn"]).read_text()) for f in files)
    assert counts == [10 + 20, 30 + 40]
