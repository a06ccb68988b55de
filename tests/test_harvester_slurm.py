"""Harvester's Slurm plugin against a real one-node Slurm (tests/slurm_support.py): workers whose
"pilot" is a small shell command are submitted, checked until they end, killed and cleaned, and
what a user would see (state, exit code, node, times, files) is asserted."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harvester_svc.domain.queue_config import load_queue_config
from harvester_svc.domain.slurm import BATCH_SCRIPT_NAME, output_file_name
from harvester_svc.domain.workers import BatchReport, SubmittedWorker, WorkerSpec, WorkerState
from harvester_svc.logic.plugins.base import PluginError, ResourcePlugin
from harvester_svc.logic.plugins.registry import check_queue_parameters, plugins_for
from harvester_svc.logic.plugins.slurm import SlurmPlugin
from harvester_svc.settings import HarvesterSettings
from tests.slurm_support import SlurmCluster, running_slurm, slurm_cluster

__all__ = ["slurm_cluster"]

W = WorkerState
NODE = socket.gethostname().split(".")[0]


@pytest.fixture
def plugin(slurm_cluster: SlurmCluster) -> SlurmPlugin:
    return SlurmPlugin(environment={"SLURM_CONF": str(slurm_cluster.conf)}, timeout_seconds=60)


def wid(number: int) -> str:
    """A worker id as harvester makes them: its instance's id and a number."""
    return f"test-harvester-{number}"


def worker(number: int, access_point: Path, shell: str, partition: str, **parameters: object) -> WorkerSpec:
    return WorkerSpec(worker_id=wid(number), queue_id="slurm-test", access_point=str(access_point), cores=1,
                      memory_mb=100, walltime_seconds=600, pilot_command=("/bin/sh", "-c", shell),
                      environment={"GREETING": "hello from worker"},
                      parameters={"partition": partition, **parameters})


def submitted(spec: WorkerSpec, batch_id: str) -> SubmittedWorker:
    return SubmittedWorker(worker_id=spec.worker_id, queue_id=spec.queue_id, batch_id=batch_id,
                           access_point=spec.access_point, parameters=spec.parameters)


def check_until(plugin: SlurmPlugin, workers: Sequence[SubmittedWorker],
                done: Callable[[dict[str, BatchReport]], bool], timeout: float = 60) -> dict[str, BatchReport]:
    """The plugin's reports by worker id, once `done` holds for them (or the time is up)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = {report.worker_id: report for report in plugin.check(workers)}
        if done(reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.3)


def ended(report: BatchReport) -> bool:
    return report.state in (W.FINISHED, W.FAILED, W.CANCELLED, W.MISSED)


def all_ended(reports: dict[str, BatchReport]) -> bool:
    return all(ended(report) for report in reports.values())


def test_the_plugin_is_a_resource_plugin(plugin: SlurmPlugin) -> None:
    implementation: ResourcePlugin = plugin
    assert implementation.name == "slurm"


def test_workers_run_end_are_killed_and_cleaned(plugin: SlurmPlugin, slurm_cluster: SlurmCluster,
                                                tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    specs = [
        worker(1, tmp_path / "writer", 'echo "$GREETING" > greeting.txt; echo pilot says hi', slurm_cluster.partition),
        worker(2, tmp_path / "failing", "echo about to fail >&2; exit 3", slurm_cluster.partition),
        worker(3, tmp_path / "sleeper", "sleep 300", slurm_cluster.partition),
    ]
    outcomes = plugin.submit(specs)
    assert [(o.worker_id, o.error) for o in outcomes] == [(wid(1), ""), (wid(2), ""), (wid(3), "")]
    assert all(o.batch_id.isdigit() for o in outcomes) and len({o.batch_id for o in outcomes}) == 3
    workers = [submitted(spec, outcome.batch_id) for spec, outcome in zip(specs, outcomes, strict=True)]
    # The job is in the cluster's partition, Slurm's own word.
    shown = slurm_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={outcomes[2].batch_id}", "--format=%P")
    assert shown.stdout.strip() == slurm_cluster.partition

    reports = check_until(plugin, workers,
                          lambda r: ended(r[wid(1)]) and ended(r[wid(2)]) and r[wid(3)].state == W.RUNNING)
    writer, failing, sleeper = reports[wid(1)], reports[wid(2)], reports[wid(3)]

    assert (writer.state, writer.exit_code, writer.error, writer.node) == (W.FINISHED, 0, "", NODE)
    assert writer.start_time is not None and writer.end_time is not None
    assert before <= writer.start_time <= writer.end_time <= datetime.now(UTC) + timedelta(seconds=2)
    # The pilot ran in its access point with the worker's environment; its output is Slurm's file there.
    assert (tmp_path / "writer" / "greeting.txt").read_text() == "hello from worker\n"
    assert (tmp_path / "writer" / output_file_name(outcomes[0].batch_id)).read_text() == "pilot says hi\n"

    assert (failing.state, failing.exit_code, failing.node) == (W.FAILED, 3, NODE)
    assert failing.error == "FAILED (NonZeroExitCode), exit code 3"
    assert failing.start_time is not None and failing.end_time is not None
    assert "about to fail" in (tmp_path / "failing" / output_file_name(outcomes[1].batch_id)).read_text()

    assert (sleeper.state, sleeper.exit_code, sleeper.error, sleeper.node) == (W.RUNNING, None, "", NODE)
    assert sleeper.start_time is not None and sleeper.end_time is None

    assert plugin.kill([workers[2]]) == [""]
    cancelled = check_until(plugin, [workers[2]], all_ended)[wid(3)]
    assert (cancelled.state, cancelled.node) == (W.CANCELLED, NODE)
    assert cancelled.error.startswith("CANCELLED") and cancelled.end_time is not None
    # Killing what already ended is no error.
    assert plugin.kill(workers) == ["", "", ""]

    for spec in specs:
        assert (Path(spec.access_point) / BATCH_SCRIPT_NAME).exists()
    plugin.clean(workers)
    # The access points go, with the batch files and what the pilots left.
    assert not any(Path(spec.access_point).exists() for spec in specs)
    plugin.clean(workers)  # twice: nothing left to remove is fine
    with pytest.raises(PluginError, match="not a worker's directory"):
        plugin.clean([submitted(worker(4, Path("/"), "true", slurm_cluster.partition), "1")])


def test_a_job_slurm_never_heard_of_is_missed(plugin: SlurmPlugin, slurm_cluster: SlurmCluster,
                                              tmp_path: Path) -> None:
    spec = worker(10, tmp_path / "known", "true", slurm_cluster.partition)
    [outcome] = plugin.submit([spec])
    known = submitted(spec, outcome.batch_id)
    never = [SubmittedWorker(worker_id=wid(11 + n), queue_id="slurm-test", batch_id=batch_id,
                             access_point=str(tmp_path))
             for n, batch_id in enumerate(("99999990", "99999991"))]
    # Alone (squeue fails when asked for one job it does not know), and among others.
    [alone] = plugin.check([never[0]])
    assert alone.state == W.MISSED
    assert alone.error == ("Slurm job 99999990 is unknown to Slurm: not in squeue nor in its job completion file "
                           "(sacct --completion)")
    assert [report.state for report in plugin.check([never[0], known, never[1]])][::2] == [W.MISSED, W.MISSED]
    assert plugin.check([known])[0].state != W.MISSED
    # A worker whose submission failed has no job id at all.
    broken = submitted(spec, "")
    assert plugin.check([broken])[0].error == "no Slurm job: '' is not a Slurm job id"
    assert plugin.kill([broken, never[0]]) == ["", ""]


def test_harvesters_own_environment_does_not_reach_a_worker(plugin: SlurmPlugin, slurm_cluster: SlurmCluster,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PANDA_CLIENT_SECRET", "harvester-only")
    scrubbed = SlurmPlugin(environment={"SLURM_CONF": str(slurm_cluster.conf)})
    spec = worker(15, tmp_path / "env", "env > env.txt", slurm_cluster.partition)
    [outcome] = scrubbed.submit([spec])
    check_until(scrubbed, [submitted(spec, outcome.batch_id)], all_ended)
    seen = dict(line.split("=", 1) for line in (tmp_path / "env" / "env.txt").read_text().splitlines() if "=" in line)
    assert "PANDA_CLIENT_SECRET" not in seen
    assert seen["GREETING"] == "hello from worker" and seen["SLURM_JOB_ID"] == outcome.batch_id
    assert "PATH" in seen and "HOME" in seen


def test_check_reports_each_worker_in_order_in_one_call(plugin: SlurmPlugin, slurm_cluster: SlurmCluster,
                                                        tmp_path: Path) -> None:
    specs = [worker(20 + n, tmp_path / f"w{n}", f"exit {n}", slurm_cluster.partition) for n in range(4)]
    outcomes = plugin.submit(specs)
    workers = [submitted(spec, outcome.batch_id) for spec, outcome in zip(specs, outcomes, strict=True)]
    reports = check_until(plugin, workers, all_ended)
    assert [plugin_report.worker_id for plugin_report in plugin.check(workers)] == [wid(20 + n) for n in range(4)]
    assert [(reports[wid(20 + n)].state, reports[wid(20 + n)].exit_code) for n in range(4)] == [
        (W.FINISHED, 0), (W.FAILED, 1), (W.FAILED, 2), (W.FAILED, 3)]


def test_a_refused_submission_is_that_workers_outcome_with_sbatchs_words(plugin: SlurmPlugin,
                                                                         slurm_cluster: SlurmCluster,
                                                                         tmp_path: Path) -> None:
    good = worker(30, tmp_path / "good", "true", slurm_cluster.partition)
    no_partition = worker(31, tmp_path / "bad", "true", "no-such-partition")
    bad_args = worker(32, tmp_path / "args", "true", slurm_cluster.partition, sbatch_args=["--no-such-option"])
    outcomes = plugin.submit([no_partition, good, bad_args])
    assert [o.worker_id for o in outcomes] == [wid(31), wid(30), wid(32)]
    assert outcomes[0].batch_id == "" and "invalid partition" in outcomes[0].error.lower()
    assert outcomes[0].error.startswith("sbatch: ")
    assert outcomes[1].batch_id.isdigit() and outcomes[1].error == ""
    assert outcomes[2].batch_id == "" and "no-such-option" in outcomes[2].error


def test_a_queues_own_template_and_sbatch_args_are_used(plugin: SlurmPlugin, slurm_cluster: SlurmCluster,
                                                        tmp_path: Path) -> None:
    template = tmp_path / "worker.sh.in"
    template.write_text("#!/bin/sh\n#SBATCH --job-name=custom-{workerID}\n"
                        "echo cores={nCore} minutes={walltimeMinutes} partition={partition} > facts.txt\n")
    spec = worker(40, tmp_path / "custom", "unused", slurm_cluster.partition, template_file=str(template),
                  sbatch_args=["--comment=from-sbatch-args"])
    plugin.check_parameters(spec.parameters)
    [outcome] = plugin.submit([spec])
    assert outcome.error == ""
    shown = slurm_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={outcome.batch_id}",
                              "--Format=Name:|,Comment:|").stdout.strip()
    assert shown == f"custom-{wid(40)}|from-sbatch-args|"
    check_until(plugin, [submitted(spec, outcome.batch_id)], all_ended)
    facts = (tmp_path / "custom" / "facts.txt").read_text()
    assert facts == f"cores=1 minutes=10 partition={slurm_cluster.partition}\n"


def test_a_bad_template_fails_the_check_and_each_submission_without_reaching_slurm(
        plugin: SlurmPlugin, slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    template = tmp_path / "bad.sh.in"
    template.write_text("#!/bin/sh\ncd ${HOME}\n{pilotCommand}\n")
    parameters = {"partition": slurm_cluster.partition, "template_file": str(template)}
    with pytest.raises(ValueError, match=r"unknown placeholder \{HOME\}"):
        plugin.check_parameters(parameters)
    with pytest.raises(ValueError, match="No such file or directory"):
        plugin.check_parameters({"template_file": str(tmp_path / "missing.sh.in")})
    outcomes = plugin.submit([worker(50, tmp_path / "a", "true", slurm_cluster.partition, template_file=str(template)),
                              worker(51, tmp_path / "b", "true", slurm_cluster.partition, nonsense=1)])
    assert outcomes[0].batch_id == "" and "unknown placeholder {HOME}" in outcomes[0].error
    assert outcomes[1].batch_id == "" and "nonsense: unknown parameter" in outcomes[1].error


def test_a_slurm_queue_whose_template_would_fail_is_named_when_the_configuration_is_loaded(tmp_path: Path) -> None:
    template = tmp_path / "worker.sh.in"
    template.write_text("#!/bin/sh\ncd ${HOME}\n{pilotCommand}\n")

    def queue(**submitter: object) -> dict[str, object]:
        return {"mapType": "NoJob", "maxWorkers": 2, "resources": {"cores": 1},
                "submitter": {"plugin": "slurm", "partition": "main", **submitter}, "messenger": {"type": "grpc"}}

    queues = load_queue_config(json.dumps({
        "good": queue(), "own-template": queue(template_file=str(template)),
        "no-template": queue(template_file=str(tmp_path / "missing.sh.in"), sbatch_args=["--qos=short"])}))
    plugins = plugins_for(queues.values(), HarvesterSettings())
    assert isinstance(plugins["slurm"], SlurmPlugin)
    problems = check_queue_parameters(queues.values(), plugins)
    assert len(problems) == 2
    assert problems[0].startswith('queue "own-template": submitter: batch script template: unknown placeholder {HOME}')
    assert problems[1] == (f'queue "no-template": submitter: template_file {tmp_path / "missing.sh.in"}: '
                           "No such file or directory")


def test_commands_that_fail_as_a_whole_are_plugin_errors(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    # A configuration naming a controller nobody listens on: squeue and scancel cannot answer.
    # (MessageTimeout shortened: the commands retry for that long.)
    conf = tmp_path / "slurm.conf"
    conf.write_text(slurm_cluster.conf.read_text()
                    .replace(f"SlurmctldPort={_setting(slurm_cluster.conf, 'SlurmctldPort')}",
                             f"SlurmctldPort={_free_port()}")
                    .replace("MessageTimeout=10", "MessageTimeout=2"))
    nowhere = SlurmPlugin(environment={"SLURM_CONF": str(conf)}, timeout_seconds=30)
    some = SubmittedWorker(worker_id=wid(60), queue_id="slurm-test", batch_id="1", access_point=str(tmp_path))
    with pytest.raises(PluginError, match=r"^squeue: .*(Unable to contact|Connection refused|Zero Bytes)"):
        nowhere.check([some])
    with pytest.raises(PluginError, match=r"^scancel: "):
        nowhere.kill([some])
    # Submitting stops at the first worker the controller did not take: the rest get its error.
    outcomes = nowhere.submit([worker(61, tmp_path / "a", "true", "x"), worker(62, tmp_path / "b", "true", "x")])
    assert outcomes[0].error and outcomes[1].error == outcomes[0].error
    # A command that does not end in time.
    stubs = _stub_bin(tmp_path, "squeue", "exec /bin/sleep 30")
    slow = SlurmPlugin(environment={"SLURM_CONF": str(conf), "PATH": str(stubs)}, timeout_seconds=0.5)
    with pytest.raises(PluginError, match=r"squeue did not answer within 0\.5 s"):
        slow.check([some])
    missing = SlurmPlugin(environment={"PATH": str(tmp_path / "empty")})
    with pytest.raises(PluginError, match="squeue: No such file or directory"):
        missing.check([some])


@pytest.fixture(scope="module")
def short_lived_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A cluster that forgets ended jobs two seconds after they end."""
    with running_slurm(tmp_path_factory.mktemp("slurm-short"), min_job_age_seconds=2) as cluster:
        yield cluster


def test_a_job_gone_from_squeue_is_found_in_the_job_completion_file(short_lived_cluster: SlurmCluster,
                                                                    tmp_path: Path) -> None:
    plugin = SlurmPlugin(environment={"SLURM_CONF": str(short_lived_cluster.conf)})
    specs = [worker(70, tmp_path / "ok", "true", short_lived_cluster.partition),
             worker(71, tmp_path / "bad", "exit 4", short_lived_cluster.partition)]
    outcomes = plugin.submit(specs)
    workers = [submitted(spec, outcome.batch_id) for spec, outcome in zip(specs, outcomes, strict=True)]
    ids = ",".join(outcome.batch_id for outcome in outcomes)
    deadline = time.monotonic() + 90
    while short_lived_cluster.run("squeue", "--noheader", "--states=all", f"--jobs={ids}", "--format=%i",
                                  timeout=30).stdout.strip():
        assert time.monotonic() < deadline, "the controller kept the ended jobs"
        time.sleep(1)
    ok, bad = plugin.check(workers)
    assert (ok.state, ok.exit_code, ok.node, ok.error) == (W.FINISHED, 0, NODE, "")
    assert (bad.state, bad.exit_code, bad.node, bad.error) == (W.FAILED, 4, NODE, "FAILED, exit code 4")
    # The job completion file's times carry no offset: they are read in the local zone.
    assert ok.start_time is not None and ok.end_time is not None
    assert abs(datetime.now(UTC) - ok.end_time) < timedelta(minutes=2)

    # A cluster that keeps no record of ended jobs (its clients read JobCompType from their
    # configuration) cannot say how they ended.
    conf = tmp_path / "no-jobcomp.conf"
    conf.write_text(short_lived_cluster.conf.read_text().replace("JobCompType=jobcomp/filetxt",
                                                                 "JobCompType=jobcomp/none"))
    forgetful = SlurmPlugin(environment={"SLURM_CONF": str(conf)})
    reports = forgetful.check(workers)
    assert [report.state for report in reports] == [W.MISSED, W.MISSED]
    assert reports[0].error == (f"Slurm job {outcomes[0].batch_id} is unknown to Slurm: not in squeue and it keeps "
                                "no record of ended jobs (MinJobAge passed?)")


def _setting(conf: Path, name: str) -> str:
    return next(line.split("=", 1)[1] for line in conf.read_text().splitlines() if line.startswith(f"{name}="))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stub_bin(tmp_path: Path, name: str, body: str) -> Path:
    directory = tmp_path / "stub-bin"
    directory.mkdir(exist_ok=True)
    stub = directory / name
    stub.write_text(f"#!/bin/sh\n{body}\n")
    stub.chmod(0o755)
    return directory
