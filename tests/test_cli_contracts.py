"""The command line says what a service would refuse before it sends anything: the contracts'
rules (panda_runtime.contracts) on jobs, tasks and dataset file names, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from panda_cli import specs
from panda_cli.main import main
from panda_cli.task_specs import task_from_yaml


@pytest.mark.parametrize(("job", "words"), [
    ("env: {A=B: c}", "environment: 'A=B' is not an environment variable name"),
    ("label: " + "x" * 300, "label: label is 300 characters long; at most 256"),
    ("outputs: ['..']", "files[0].lfn: logical file name '..'"),
    ("inputs: ['a b']", "files[0].lfn: logical file name 'a b'"),
    ('command: ["echo", "a\\0b"]', "command[1]: argument contains a NUL character"),
])
def test_a_job_the_server_would_refuse_is_an_error_here(job: str, words: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        specs.jobs_from_yaml(f"- queue: local\n  command: echo\n  {job}\n", source="jobs.yaml")
    assert str(caught.value).startswith("jobs.yaml: job 1: ") and words in str(caught.value)


def test_flags_are_checked_too() -> None:
    with pytest.raises(specs.SpecError, match="environment"):
        specs.job_from_flags(queue="local", command=["echo"], env=["1X=2"])


def test_submit_exits_without_calling_the_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("- queue: local\n  command: echo\n  label: " + "x" * 300 + "\n")
    assert main(["--server", "127.0.0.1:1", "submit", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert "label is 300 characters long" in err and "cannot reach" not in err


@pytest.mark.parametrize(("line", "words"), [
    ("split: {gb_per_job: .nan}", "gb_per_job must be a finite number"),
    ("split: {gb_per_job: .inf}", "gb_per_job must be a finite number"),
    ("max_failure_rate: .inf", "max_failure_rate must be a finite number"),
    ("environment: {A=B: c}", "not an environment variable name"),
    ("priority: 1000000", "task.yaml: priority: priority must be within ±100000"),
    ("max_attempts: 500", "task.yaml: max_attempts: max_attempts must be between 1 and 100, not 500"),
    ("scout_jobs: 5000", "task.yaml: scout_jobs: scout_jobs must be between 0 and 1000, not 5000"),
    ("queues: [local, 'a b']", "task.yaml: queues: 'a b' is not a queue id"),
    ("excluded_queues: ['x/y']", "task.yaml: excluded_queues: 'x/y' is not a queue id"),
    ("working_group: " + "w" * 300, "task.yaml: working_group: working_group is 300 characters long; at most 256"),
    ("output_file_pattern: '{serial:x}.{dataset}'", "task.yaml: output_file_pattern: format 'x'"),
])
def test_a_task_jedi_would_refuse_is_an_error_here(line: str, words: str) -> None:
    text = f"task_name: t\ntransformation: echo\ninput_dataset: in\noutput_dataset: out\n{line}\n"
    with pytest.raises(specs.SpecError) as caught:
        task_from_yaml(text, source="task.yaml")
    assert words in str(caught.value)


@pytest.mark.parametrize(("datasets", "words"), [
    ("input_datasets: [in, 'a b']\noutput_dataset: out", "task.yaml: input_datasets[1]: 'a b' is not a dataset name"),
    ("input_datasets: [in]\noutput_dataset: ../out", "task.yaml: output_dataset: '../out' is not a dataset name"),
])
def test_dataset_names_jedi_would_refuse_are_errors_here(datasets: str, words: str) -> None:
    with pytest.raises(specs.SpecError) as caught:
        task_from_yaml(f"task_name: t\ntransformation: echo\n{datasets}\n", source="task.yaml")
    assert str(caught.value).startswith(words)


def test_dataset_files_whose_names_jedi_refuses_are_not_copied(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "a b.txt"
    source.write_text("data\n")
    se = tmp_path / "se"  # where a storage element would be: the names are refused before the server is asked
    code = main(["--server", "127.0.0.1:1", "dataset", "register", "user.me.ds", str(source),
                 "--se", "se1", "--scope", "user.me"])
    assert code == 2
    assert "logical file name 'a b.txt'" in capsys.readouterr().err
    assert not se.exists() or not any(se.iterdir()), "nothing was copied"
    # A prefix that would leave the storage element's directory.
    good = tmp_path / "ok.txt"
    good.write_text("data\n")
    code = main(["--server", "127.0.0.1:1", "dataset", "register", "user.me.ds", str(good), "--prefix", "../",
                 "--se", "se1", "--scope", "user.me"])
    assert code == 2 and "logical file name '../ok.txt'" in capsys.readouterr().err
    assert not se.exists() or not any(se.iterdir())
