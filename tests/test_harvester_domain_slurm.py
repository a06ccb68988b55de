"""Slurm's rules for harvester without Slurm: the batch script template, the state mapping, and
the parsers of what sbatch, squeue and sacct print (the sample lines are what Slurm 22.05 printed
for real jobs)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone

import pytest

from harvester_svc.domain.slurm import (
    DEFAULT_TEMPLATE,
    PLACEHOLDERS,
    SACCT_FIELDS,
    SQUEUE_FIELDS,
    SQUEUE_FORMAT,
    SlurmJob,
    SlurmParameters,
    batch_report,
    check_template,
    is_batch_id,
    parse_parameters,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    placeholder_values,
    render_batch_script,
    worker_state,
)
from harvester_svc.domain.workers import WorkerSpec, WorkerState

W = WorkerState
ZONE = timezone(timedelta(hours=2))


def spec(**changes: object) -> WorkerSpec:
    values: dict[str, object] = dict(
        worker_id="h1-42", queue_id="site-a", access_point="/data/workers/42", cores=4, memory_mb=8000,
        walltime_seconds=3600, pilot_command=("/opt/panda/bin/panda", "pilot", "--queue", "site-a"),
        environment={"PANDA_SERVER": "server:25080"})
    values.update(changes)
    return WorkerSpec(**values)  # type: ignore[arg-type]


# The template


def test_the_default_template_is_valid_and_asks_for_the_workers_resources() -> None:
    check_template(DEFAULT_TEMPLATE)
    script = render_batch_script(DEFAULT_TEMPLATE, spec(), "short")
    assert script.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --job-name=panda-worker-h1-42", "#SBATCH --nodes=1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --mem=8000", "#SBATCH --time=60", "export PANDA_SERVER=server:25080",
                 "exec /opt/panda/bin/panda pilot --queue site-a"):
        assert line in script.splitlines()


def test_every_placeholder_has_a_value_and_harvesters_names_mean_the_same() -> None:
    values = placeholder_values(spec(cores=8, memory_mb=16000, walltime_seconds=7201), "long")
    assert set(values) == set(PLACEHOLDERS)
    assert values["nCore"] == values["nCorePerNode"] == values["nCoreTotal"] == 8
    assert values["memoryMB"] == values["requestRam"] == 16000
    assert values["walltime"] == values["requestWalltime"] == 7201
    # Minutes round up: Slurm must not end a worker before its walltime.
    assert values["walltimeMinutes"] == values["requestWalltimeMinute"] == 121
    assert (values["accessPoint"], values["workerID"], values["queueName"], values["partition"]) == (
        "/data/workers/42", "h1-42", "site-a", "long")


def test_memory_and_walltime_are_never_zero_in_a_request() -> None:
    values = placeholder_values(spec(cores=2, memory_mb=0, walltime_seconds=1), "")
    # --mem=0 would ask Slurm for the whole node; Harvester asks for at least 1 MB per core.
    assert values["memoryMB"] == 2
    assert values["memoryDirective"] == "# no memory asked for: the partition's default applies"
    assert values["walltimeMinutes"] == 1
    assert placeholder_values(spec(memory_mb=3000), "")["memoryDirective"] == "#SBATCH --mem=3000"


def test_the_command_and_environment_reach_the_shell_as_they_were() -> None:
    """Quoting is the shell's business: run the rendered lines in bash and read them back."""
    awkward = "it's a $HOME `date` \"quoted\"\nsecond line; rm -rf /"
    worker = spec(pilot_command=("printf", "%s|", "one two", awkward), environment={"AWKWARD": awkward, "EMPTY": ""})
    script = render_batch_script("{environment}\nprintf '%s|' \"$AWKWARD\" \"$EMPTY\"\n{pilotCommand}\n", worker, "")
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown == f"{awkward}||one two|{awkward}|"


def test_an_environment_name_a_shell_cannot_export_is_refused() -> None:
    with pytest.raises(ValueError, match="'BAD-NAME', '1ST'"):
        placeholder_values(spec(environment={"GOOD": "1", "BAD-NAME": "x", "1ST": "y"}), "")


def test_unknown_placeholders_are_all_named_once_with_the_known_ones() -> None:
    with pytest.raises(ValueError) as raised:
        check_template("#!/bin/sh\necho {nCore} {ncore} {memory} {ncore}\n")
    message = str(raised.value)
    assert "unknown placeholders {ncore}, {memory};" in message
    assert "known: {nCorePerNode}, {nCore}" in message


def test_a_shell_variable_in_braces_is_an_unknown_placeholder_and_the_message_says_how_to_write_it() -> None:
    with pytest.raises(ValueError, match=r"unknown placeholder \{HOME\}.*\$\{\{VAR\}\}"):
        check_template("cd ${HOME}\n")
    check_template("cd ${{HOME}}/{accessPoint}\n")
    assert render_batch_script("cd ${{HOME}}\n", spec(), "") == "cd ${HOME}\n"


@pytest.mark.parametrize(("template", "message"), [
    ("echo {", "Single '{'"),
    ("echo }", "Single '}'"),
    ("{}", r"unknown placeholder \{\}"),
    ("{0}", r"unknown placeholder \{0\}"),
    ("{nCore.real}", r"unknown placeholder \{nCore.real\}"),
    ("{nCore[0]}", r"unknown placeholder \{nCore\[0\]\}"),
    ("{accessPoint:d}", "Unknown format code 'd'"),
    ("{nCore:{walltime}}", "has a placeholder in its format"),
])
def test_a_malformed_template_is_refused(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_template(template)


def test_a_format_that_fits_its_value_is_accepted() -> None:
    check_template("{walltime:08d} {accessPoint!r} {nCore:>3}")
    assert render_batch_script("{walltime:06d}", spec(walltime_seconds=90), "") == "000090"


def test_parameters_are_read_and_bad_ones_all_named() -> None:
    assert parse_parameters({}) == SlurmParameters()
    assert parse_parameters({"partition": "short", "template_file": "/etc/t.sh", "sbatch_args": ["--qos=x"]}) == (
        SlurmParameters(partition="short", template_file="/etc/t.sh", sbatch_args=("--qos=x",)))
    with pytest.raises(ValueError) as raised:
        parse_parameters({"partition": 3, "sbatch_args": "--qos=x", "partiton": "short"})
    assert str(raised.value) == ("partiton: unknown parameter (known: partition, template_file, sbatch_args); "
                                 "partition: must be a string; sbatch_args: must be a list of strings")


# States


@pytest.mark.parametrize(("slurm_state", "expected"), [
    ("PENDING", W.SUBMITTED), ("CONFIGURING", W.SUBMITTED),
    ("REQUEUED", W.SUBMITTED), ("REQUEUE_HOLD", W.SUBMITTED), ("REQUEUE_FED", W.SUBMITTED),
    ("RUNNING", W.RUNNING), ("COMPLETING", W.RUNNING), ("SUSPENDED", W.RUNNING), ("STOPPED", W.RUNNING),
    ("SIGNALING", W.RUNNING), ("STAGE_OUT", W.RUNNING), ("RESIZING", W.RUNNING),
    ("COMPLETED", W.FINISHED), ("TIMEOUT", W.FINISHED), ("PREEMPTED", W.FINISHED),
    ("CANCELLED", W.CANCELLED), ("CANCELLED by 0", W.CANCELLED), ("CANCELLED by 12345", W.CANCELLED),
    ("CANCELLED+", W.CANCELLED), (" cancelled ", W.CANCELLED),
    ("FAILED", W.FAILED), ("NODE_FAIL", W.FAILED), ("OUT_OF_MEMORY", W.FAILED), ("BOOT_FAIL", W.FAILED),
    ("DEADLINE", W.FAILED), ("SPECIAL_EXIT", W.FAILED), ("REVOKED", W.FAILED), ("", W.FAILED),
    ("SOMETHING_NEW", W.FAILED),
])
def test_slurm_states_map_as_harvester_maps_them(slurm_state: str, expected: WorkerState) -> None:
    assert worker_state(slurm_state) is expected


# sbatch


@pytest.mark.parametrize(("stdout", "batch_id"), [
    ("123\n", "123"),
    ("123;cluster-a\n", "123"),
    ("sbatch: warning: can't honor --ntasks-per-node set to 1\n4567\n", "4567"),
])
def test_sbatch_parsable_gives_the_job_id(stdout: str, batch_id: str) -> None:
    assert parse_sbatch(stdout) == batch_id


@pytest.mark.parametrize("stdout", ["", "\n", "Submitted batch job 12\n", "12_3\n", "abc;cluster\n"])
def test_sbatch_output_without_a_job_id_is_an_error(stdout: str) -> None:
    with pytest.raises(ValueError, match="sbatch printed no job id"):
        parse_sbatch(stdout)


def test_batch_ids_are_digits() -> None:
    assert is_batch_id("1") and is_batch_id("987654")
    assert not any(is_batch_id(text) for text in ("", "12;c", "1_2", "-1", "12 ", "x"))


# squeue


SQUEUE_OUTPUT = """\
3|COMPLETED|0|vm|2026-12-08T03:03:59+0000|2026-12-08T03:03:59+0000|None|
1|FAILED|768|vm|2026-12-08T03:03:56+0000|2026-12-08T03:03:56+0000|NonZeroExitCode|
4|FAILED|9|vm|2026-12-08T03:05:27+0000|2026-12-08T03:05:28+0000|JobLaunchFailure|
2|RUNNING|0|vm|2026-12-08T03:03:56+0000|NONE|None|
5|PENDING|0||N/A|N/A|Resources|
6|CANCELLED|15|vm|2026-12-08T03:03:56+0000|2026-12-08T03:06:00+0000|None|
7|CANCELLED|0||2026-12-08T03:06:00+0000|2026-12-08T03:06:00+0000|Resources|
10|RUNNING|0|vm|2026-12-08T03:23:33+0000|2026-12-08T03:28:33+0000|None|
11|PENDING|0||2026-12-08T03:30:00+0000|2026-12-08T03:35:00+0000|Priority|
"""


def test_the_squeue_format_names_every_field_with_its_separator() -> None:
    assert SQUEUE_FORMAT == "JobID:|,State:|,exit_code:|,NodeList:|,StartTime:|,EndTime:|,Reason:|"
    assert len(SQUEUE_FIELDS) == 7


def test_squeue_lines_are_read_with_their_wait_status_and_times() -> None:
    jobs = parse_squeue(SQUEUE_OUTPUT, ZONE)
    assert sorted(jobs, key=int) == ["1", "2", "3", "4", "5", "6", "7", "10", "11"]
    at = datetime(2026, 12, 8, 3, 3, 56, tzinfo=UTC)
    assert jobs["1"] == SlurmJob(batch_id="1", state="FAILED", node="vm", exit_status=3, signal=0,
                                 start_time=at, end_time=at, reason="NonZeroExitCode")
    assert jobs["3"].exit_status == 0 and jobs["3"].reason == ""
    assert (jobs["4"].exit_status, jobs["4"].signal) == (None, 9)
    assert jobs["2"].end_time is None and jobs["2"].start_time == at
    assert jobs["5"] == SlurmJob(batch_id="5", state="PENDING", exit_status=0, reason="Resources")
    assert (jobs["6"].signal, jobs["6"].exit_status) == (15, None)


def test_squeue_times_without_an_offset_are_in_the_zone_given() -> None:
    jobs = parse_squeue("8|RUNNING|0|vm|2026-12-08T05:00:00|Unknown|None|\n", ZONE)
    assert jobs["8"].start_time == datetime(2026, 12, 8, 3, 0, tzinfo=UTC)
    assert jobs["8"].end_time is None


def test_a_squeue_line_with_other_fields_is_an_error_not_a_guess() -> None:
    with pytest.raises(ValueError, match="squeue printed a line of 3 fields, not 7"):
        parse_squeue("1|RUNNING|0\n", ZONE)


# sacct


SACCT_OUTPUT = """\
1|FAILED|3:0|vm|2026-12-08T03:03:56|2026-12-08T03:03:56
3|COMPLETED|0:0|vm|2026-12-08T03:03:59|2026-12-08T03:03:59
4|FAILED|0:9|vm|2026-12-08T03:05:27|2026-12-08T03:05:28
2|CANCELLED by 0|0:15|vm|2026-12-08T03:03:56+0000|2026-12-08T03:06:00+0000
9|CANCELLED by 0|0:0|None assigned|Unknown|2026-12-08T03:06:00
"""


def test_sacct_lines_are_read_with_exit_code_and_signal() -> None:
    jobs = parse_sacct(SACCT_OUTPUT, ZONE)
    assert list(SACCT_FIELDS) == ["JobID", "State", "ExitCode", "NodeList", "Start", "End"]
    assert jobs["1"] == SlurmJob(batch_id="1", state="FAILED", node="vm", exit_status=3,
                                 start_time=datetime(2026, 12, 8, 3, 3, 56, tzinfo=ZONE),
                                 end_time=datetime(2026, 12, 8, 3, 3, 56, tzinfo=ZONE))
    assert (jobs["4"].exit_status, jobs["4"].signal) == (None, 9)
    assert jobs["2"].state == "CANCELLED by 0" and jobs["2"].start_time == datetime(2026, 12, 8, 3, 3, 56, tzinfo=UTC)
    assert jobs["9"].node == "" and jobs["9"].start_time is None


def test_a_sacct_line_with_other_fields_is_an_error() -> None:
    with pytest.raises(ValueError, match="sacct printed a line of 2 fields, not 6"):
        parse_sacct("1|FAILED\n", ZONE)


# Reports


def test_a_completed_job_is_a_finished_worker_with_exit_code_zero_and_no_error() -> None:
    report = batch_report("w7", parse_squeue(SQUEUE_OUTPUT, ZONE)["3"])
    assert (report.worker_id, report.state, report.exit_code, report.error, report.node) == (
        "w7", W.FINISHED, 0, "", "vm")
    assert report.start_time is not None and report.end_time is not None


def test_a_failed_job_says_why_and_how_its_script_ended() -> None:
    jobs = parse_squeue(SQUEUE_OUTPUT, ZONE)
    failed = batch_report("w1", jobs["1"])
    assert (failed.state, failed.exit_code, failed.error) == (W.FAILED, 3, "FAILED (NonZeroExitCode), exit code 3")
    killed = batch_report("w4", jobs["4"])
    # 128 + the signal, as a shell reports a command a signal ended.
    assert (killed.state, killed.exit_code, killed.error) == (
        W.FAILED, 137, "FAILED (JobLaunchFailure), killed by signal 9")


def test_a_cancelled_job_is_a_cancelled_worker_with_an_exit_code_only_if_it_ran() -> None:
    jobs = parse_squeue(SQUEUE_OUTPUT, ZONE)
    ran = batch_report("w6", jobs["6"])
    assert (ran.state, ran.exit_code, ran.error) == (W.CANCELLED, 143, "CANCELLED, killed by signal 15")
    # Cancelled while pending: Slurm sets its start to its end; it never had a node, nor an exit
    # code, and "Resources" is what it waited for, not why it ended.
    never_ran = batch_report("w7", jobs["7"])
    assert (never_ran.state, never_ran.exit_code, never_ran.error) == (W.CANCELLED, None, "CANCELLED")
    assert never_ran.start_time is None and never_ran.end_time == datetime(2026, 12, 8, 3, 6, tzinfo=UTC)
    by_user = batch_report("w2", parse_sacct(SACCT_OUTPUT, ZONE)["2"])
    assert (by_user.state, by_user.error) == (W.CANCELLED, "CANCELLED by 0, killed by signal 15")


def test_a_job_that_ran_out_of_time_is_finished_and_says_so() -> None:
    job = SlurmJob(batch_id="5", state="TIMEOUT", node="vm", exit_status=0, signal=0,
                   start_time=datetime(2026, 1, 1, tzinfo=UTC), end_time=datetime(2026, 1, 1, 1, tzinfo=UTC))
    report = batch_report("w5", job)
    assert (report.state, report.error, report.exit_code) == (W.FINISHED, "TIMEOUT", 0)


def test_a_live_job_has_no_exit_code_and_no_error() -> None:
    jobs = parse_squeue(SQUEUE_OUTPUT, ZONE)
    running, pending = batch_report("w2", jobs["2"]), batch_report("w5", jobs["5"])
    assert (running.state, running.exit_code, running.error, running.node) == (W.RUNNING, None, "", "vm")
    assert (pending.state, pending.exit_code, pending.error, pending.node) == (W.SUBMITTED, None, "", "")


def test_expected_times_are_not_reported_as_the_jobs_own() -> None:
    """squeue shows a running job's end as its start plus its time limit, and a pending job's
    expected start and end: neither has happened."""
    jobs = parse_squeue(SQUEUE_OUTPUT, ZONE)
    running = batch_report("w10", jobs["10"])
    assert running.start_time == datetime(2026, 12, 8, 3, 23, 33, tzinfo=UTC) and running.end_time is None
    pending = batch_report("w11", jobs["11"])
    assert pending.start_time is None and pending.end_time is None
