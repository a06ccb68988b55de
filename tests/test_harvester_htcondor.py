"""Harvester's HTCondor plugin, with HTCondor's own bindings: the Submit objects it builds, the
job ads it reads (real `classad2.ClassAd`s, their constraints evaluated by the ClassAd library
itself) and the schedd calls it makes. No HTCondor pool runs here, so the schedd is a stand-in
that keeps job ads and answers `submit`, `query`, `history` and `act` as a schedd does."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import classad2
import htcondor2
import pytest

from harvester_svc.domain.htcondor import HTCondorQueueConfig, report_from_job_ad, workers_constraint
from harvester_svc.domain.workers import SubmittedWorker, WorkerSpec, WorkerState, worker_id_of
from harvester_svc.logic.plugins.base import PluginError
from harvester_svc.logic.plugins.htcondor import HTCondorPlugin, locate_schedd

INSTANCE = "harvester-test"


@dataclass
class RecordingSchedd:
    """A schedd's queue and history as ClassAds; every call recorded. Constraints are evaluated
    by the ClassAd library, as the schedd would."""

    queue: list[classad2.ClassAd] = field(default_factory=list)
    history_ads: list[classad2.ClassAd] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_with: Exception | None = None
    next_cluster: int = 100

    def _maybe_fail(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    def submit(self, description: htcondor2.Submit) -> htcondor2.SubmitResult:
        self.calls.append(("submit", description))
        self._maybe_fail()
        cluster, self.next_cluster = self.next_cluster, self.next_cluster + 1
        return htcondor2.SubmitResult(cluster, 0, 1, classad2.ClassAd(), None)

    def query(self, constraint: str, projection: list[str]) -> list[classad2.ClassAd]:
        self.calls.append(("query", constraint))
        self._maybe_fail()
        return [ad for ad in self.queue if classad2.ExprTree(constraint).eval(ad) is True]

    def history(self, constraint: str, projection: list[str], match: int) -> list[classad2.ClassAd]:
        self.calls.append(("history", constraint))
        self._maybe_fail()
        return [ad for ad in self.history_ads if classad2.ExprTree(constraint).eval(ad) is True][:match]

    def act(self, action: htcondor2.JobAction, job_spec: str | list[str], reason: str) -> classad2.ClassAd:
        self.calls.append(("act", (action, job_spec, reason)))
        self._maybe_fail()
        if isinstance(job_spec, list):
            chosen = [ad for ad in self.queue if f"{ad['ClusterId']}.{ad['ProcId']}" in job_spec]
        else:
            chosen = [ad for ad in self.queue if classad2.ExprTree(job_spec).eval(ad) is True]
        result = classad2.ClassAd({"TotalSuccess": 0, "TotalError": 0, "TotalBadStatus": 0,
                                   "TotalPermissionDenied": 0, "TotalNotFound": 0, "TotalAlreadyDone": 0})
        for ad in chosen:
            if ad.get("Stuck") is True:  # a job the schedd will not remove (another owner's, say)
                result["TotalPermissionDenied"] += 1
                continue
            ad["LastJobStatus"], ad["JobStatus"] = ad["JobStatus"], 3
            result["TotalSuccess"] += 1
        return result


def wid(number: int) -> str:
    """Worker `number` of this instance: its id as harvester makes it."""
    return worker_id_of(INSTANCE, number)


def job_ad(worker: int | str, status: int, cluster: int | None = None, **attributes: object) -> classad2.ClassAd:
    """The job of worker `worker` (a number of this instance, or a whole id), as the schedd keeps it."""
    worker_id = wid(worker) if isinstance(worker, int) else worker
    default_cluster = 1000 + worker if isinstance(worker, int) else 2000
    return classad2.ClassAd({"ClusterId": cluster or default_cluster, "ProcId": 0, "JobStatus": status,
                             "harvesterID": INSTANCE, "harvesterWorkerID": worker_id, **attributes})


def spec(tmp_path: Path, number: int = 7, **overrides: Any) -> WorkerSpec:
    """Worker `number` of this instance, unless `worker_id` says otherwise."""
    values: dict[str, Any] = {
        "worker_id": wid(number), "queue_id": "site-a", "access_point": str(tmp_path / f"worker-{number}"),
        "cores": 8, "memory_mb": 16000, "walltime_seconds": 7200,
        "pilot_command": ("/opt/panda/bin/panda", "pilot", "--queue", "site a", "--label", "it's \"quoted\""),
        "environment": {"PANDA_SERVER": "server.example:25080", "PANDA_TOKEN_FILE": "/etc/panda/token"},
        "parameters": {},
    }
    values.update(overrides)
    return WorkerSpec(**values)


def submitted(worker: int | str, batch_id: str = "", access_point: str = "/tmp/none") -> SubmittedWorker:
    worker_id = wid(worker) if isinstance(worker, int) else worker
    default_batch_id = f"{1000 + worker}.0" if isinstance(worker, int) else "2000.0"
    return SubmittedWorker(worker_id=worker_id, queue_id="site-a", batch_id=batch_id or default_batch_id,
                           access_point=access_point)


def plugin_with(schedd: RecordingSchedd) -> HTCondorPlugin:
    return HTCondorPlugin(instance=INSTANCE, schedd_factory=lambda config: schedd)


# ---- submit -------------------------------------------------------------------------------


def test_the_submit_description_of_a_worker(tmp_path: Path) -> None:
    schedd = RecordingSchedd()
    worker = spec(tmp_path, parameters={"submit_commands": {"accounting_group": "group_atlas.prod",
                                                            "+ProjectName": '"panda"'}})
    outcomes = plugin_with(schedd).submit([worker])

    assert [(o.worker_id, o.batch_id, o.error) for o in outcomes] == [("harvester-test-7", "100.0", "")]
    [(call, description)] = schedd.calls
    assert call == "submit" and isinstance(description, htcondor2.Submit)
    access_point = worker.access_point
    assert dict(description) == {
        "universe": "vanilla",
        "executable": "/opt/panda/bin/panda",
        "transfer_executable": "false",
        "arguments": """"'pilot' '--queue' 'site a' '--label' 'it''s ""quoted""'\"""",
        "environment": """"'PANDA_SERVER=server.example:25080' 'PANDA_TOKEN_FILE=/etc/panda/token'\"""",
        "initialdir": access_point,
        "output": f"{access_point}/pilot.out",
        "error": f"{access_point}/pilot.err",
        "log": f"{access_point}/condor.log",
        "request_cpus": "8",
        "request_memory": "16000",
        # Custom attributes: `+name` in the submit language, `MY.name` as the bindings keep them.
        "MY.harvesterID": f'"{INSTANCE}"',
        "MY.harvesterWorkerID": '"harvester-test-7"',
        "periodic_remove": "JobStatus == 2 && time() - EnteredCurrentStatus > 7200",
        "accounting_group": "group_atlas.prod",
        "MY.ProjectName": '"panda"',
    }
    # The submit language leaves the quoted values as they are (no macro in them)...
    assert description.expand("arguments") == description["arguments"]
    assert description.expand("environment") == description["environment"]
    # ... and the access point is there for the schedd to find (initialdir must exist).
    assert Path(access_point).is_dir()


@pytest.mark.parametrize("worker_id", ["site_A.cern-203", 'odd"id\\-1', "back\\"])
def test_the_worker_attribute_is_a_classad_string_of_the_worker_id(tmp_path: Path, worker_id: str) -> None:
    schedd = RecordingSchedd()
    [outcome] = plugin_with(schedd).submit([spec(tmp_path, worker_id=worker_id)])
    assert outcome.batch_id == "100.0"
    [(_, description)] = schedd.calls
    value = description["MY.harvesterWorkerID"]
    # The submit language leaves it as it is, and the ClassAd language reads back the very id.
    assert description.expand("MY.harvesterWorkerID") == value
    assert classad2.ExprTree(value).eval() == worker_id


def test_a_worker_id_the_submit_language_would_expand_is_refused(tmp_path: Path) -> None:
    [outcome] = plugin_with(RecordingSchedd()).submit([spec(tmp_path, worker_id="site$(Cluster)-1")])
    assert not outcome.batch_id and "'$'" in outcome.error


def test_the_walltime_expression_removes_a_job_running_longer_than_its_walltime(tmp_path: Path) -> None:
    schedd = RecordingSchedd()
    plugin_with(schedd).submit([spec(tmp_path)])
    [(_, description)] = schedd.calls
    periodic_remove = classad2.ExprTree(description["periodic_remove"])
    now = int(time.time())
    assert periodic_remove.eval(job_ad(7, 2, EnteredCurrentStatus=now - 7300)) is True
    assert periodic_remove.eval(job_ad(7, 2, EnteredCurrentStatus=now - 60)) is False
    assert periodic_remove.eval(job_ad(7, 1, EnteredCurrentStatus=now - 9000)) is False


def test_no_walltime_no_periodic_remove(tmp_path: Path) -> None:
    schedd = RecordingSchedd()
    plugin_with(schedd).submit([spec(tmp_path, walltime_seconds=0)])
    assert "periodic_remove" not in dict(schedd.calls[0][1])


def test_a_command_name_is_found_on_the_path(tmp_path: Path) -> None:
    schedd = RecordingSchedd()
    plugin = HTCondorPlugin(instance=INSTANCE, schedd_factory=lambda config: schedd,
                            find_executable=lambda name: f"/usr/local/bin/{name}" if name == "panda" else None)
    outcomes = plugin.submit([spec(tmp_path, 1, pilot_command=("panda", "pilot")),
                              spec(tmp_path, 2, pilot_command=("no-such-pilot", "x"))])
    assert schedd.calls[0][1]["executable"] == "/usr/local/bin/panda"
    assert outcomes[0].batch_id and not outcomes[0].error
    assert not outcomes[1].batch_id and "no-such-pilot" in outcomes[1].error
    assert len(schedd.calls) == 1


@pytest.mark.parametrize(("overrides", "complaint"), [
    ({"pilot_command": ("/bin/pilot", "$(Cluster)")}, "'$'"),
    ({"environment": {"HOME": "$ENV(HOME)"}}, "'$'"),
    ({"environment": {"BAD-NAME": "x"}}, "BAD-NAME"),
    ({"pilot_command": ("/bin/pilot", "two\nlines")}, "line break"),
    ({"pilot_command": ("/bin/my pilot",)}, "white space"),
    ({"pilot_command": ()}, "empty"),
    ({"parameters": {"submit_commands": {"requirements": "True\nqueue 100"}}}, "line break"),
])
def test_what_the_submit_language_cannot_carry_is_refused_for_that_worker_only(
        tmp_path: Path, overrides: dict[str, Any], complaint: str) -> None:
    schedd = RecordingSchedd()
    outcomes = plugin_with(schedd).submit([spec(tmp_path, 1, **overrides), spec(tmp_path, 2)])
    assert not outcomes[0].batch_id and complaint in outcomes[0].error
    assert outcomes[1].batch_id == "100.0" and not outcomes[1].error
    assert [call for call, _ in schedd.calls] == ["submit"]


def test_a_refused_submission_is_that_workers_outcome(tmp_path: Path) -> None:
    schedd = RecordingSchedd(fail_with=htcondor2.HTCondorException("Failed to commit job submission"))
    outcomes = plugin_with(schedd).submit([spec(tmp_path, 1), spec(tmp_path, 2)])
    assert [o.batch_id for o in outcomes] == ["", ""]
    assert all("Failed to commit job submission" in o.error for o in outcomes)


def test_a_schedd_that_cannot_be_found_fails_the_whole_submission(tmp_path: Path) -> None:
    def no_schedd(config: HTCondorQueueConfig) -> RecordingSchedd:
        raise htcondor2.HTCondorException("Failed communication with collector.")

    with pytest.raises(PluginError, match="collector"):
        HTCondorPlugin(instance=INSTANCE, schedd_factory=no_schedd).submit([spec(tmp_path)])


def test_the_schedd_is_located_through_the_pools_collector() -> None:
    """The real bindings: nothing listens at this address, so the collector cannot be asked."""
    with pytest.raises(htcondor2.HTCondorException, match="collector"):
        locate_schedd(HTCondorQueueConfig(pool="127.0.0.1:9", schedd="schedd.example"))
    plugin = HTCondorPlugin(instance=INSTANCE)
    worker = SubmittedWorker(wid(1), "site-a", "5.0", "/tmp/none", parameters={"pool": "127.0.0.1:9"})
    with pytest.raises(PluginError, match="could not be reached"):
        plugin.check([worker])


# ---- the state mapping --------------------------------------------------------------------

NOW = 1_760_000_000


@pytest.mark.parametrize(("ad_text", "state", "error", "exit_code"), [
    ("[JobStatus = 1]", WorkerState.SUBMITTED, "", None),
    ('[JobStatus = 2; RemoteHost = "slot1_3@node17.site.example"]', WorkerState.RUNNING, "", None),
    ("[JobStatus = 6]", WorkerState.RUNNING, "", None),
    ("[JobStatus = 7]", WorkerState.IDLE, "", None),
    ('[JobStatus = 3; RemoveReason = "via condor_rm (by user atlas)"]', WorkerState.CANCELLED,
     "removed: via condor_rm (by user atlas)", None),
    ("[JobStatus = 4; ExitCode = 0]", WorkerState.FINISHED, "", 0),
    ("[JobStatus = 4; ExitCode = 65]", WorkerState.FAILED, "the pilot exited with code 65", 65),
    ("[JobStatus = 4; ExitBySignal = true; ExitSignal = 9]", WorkerState.FAILED, "killed by signal 9", None),
    ("[JobStatus = 4]", WorkerState.FAILED, "without an exit code", None),
    ('[JobStatus = 5; HoldReason = "Error from slot1@node: Job has gone over memory limit of 2000 megabytes."]',
     WorkerState.FAILED, "held: Error from slot1@node: Job has gone over memory limit", None),
    # Removed after it completed (condor_rm of a job left in the queue): it completed.
    ("[JobStatus = 3; LastJobStatus = 4; ExitCode = 0]", WorkerState.FINISHED, "", 0),
    ("[JobStatus = 3; LastJobStatus = 2]", WorkerState.CANCELLED, "removed", None),
    ("[JobStatus = 9]", WorkerState.FAILED, "unknown JobStatus 9", None),
])
def test_each_job_status_maps_to_a_worker_state(ad_text: str, state: WorkerState, error: str,
                                                exit_code: int | None) -> None:
    ad = classad2.parseOne(ad_text)
    assert isinstance(ad, classad2.ClassAd)
    report = report_from_job_ad("site_A.cern-3", ad)
    assert (report.worker_id, report.state, report.exit_code) == ("site_A.cern-3", state, exit_code)
    assert error in report.error and bool(error) == bool(report.error)


def test_a_job_ad_gives_the_node_and_the_times() -> None:
    ad = classad2.parseOne(f'[JobStatus = 4; ExitCode = 0; LastRemoteHost = "slot1@node3.site.example";'
                           f" JobStartDate = {NOW}; CompletionDate = {NOW + 600}]")
    report = report_from_job_ad(wid(3), ad)
    assert report.node == "node3.site.example"
    assert report.start_time == datetime.fromtimestamp(NOW, UTC)
    assert report.end_time == datetime.fromtimestamp(NOW + 600, UTC)
    running = report_from_job_ad(
        wid(3), classad2.parseOne(f"[JobStatus = 2; JobStartDate = {NOW}; CompletionDate = 0]"))
    assert running.end_time is None and running.start_time == datetime.fromtimestamp(NOW, UTC)


# ---- check, kill, clean -------------------------------------------------------------------


def test_check_reads_the_queue_then_the_history_and_misses_the_rest() -> None:
    schedd = RecordingSchedd(
        queue=[job_ad(1, 2, RemoteHost="slot1@node1"), job_ad(2, 1),
               # A job of another harvester with the same worker attribute, in the same schedd: not ours.
               classad2.ClassAd({"ClusterId": 77, "ProcId": 0, "JobStatus": 2, "harvesterID": "other",
                                 "harvesterWorkerID": wid(3)})],
        history_ads=[job_ad(3, 4, ExitCode=0)],
    )
    reports = plugin_with(schedd).check([submitted(1), submitted(2), submitted(3), submitted(4)])

    assert [(r.worker_id, r.state) for r in reports] == [
        (wid(1), WorkerState.RUNNING), (wid(2), WorkerState.SUBMITTED), (wid(3), WorkerState.FINISHED),
        (wid(4), WorkerState.MISSED)]
    assert reports[0].node == "node1"
    assert schedd.calls == [
        ("query", f'harvesterID =?= "{INSTANCE}" && identicalMember(harvesterWorkerID, {{"harvester-test-1", '
                  '"harvester-test-2", "harvester-test-3", "harvester-test-4"})'),
        ("history", f'harvesterID =?= "{INSTANCE}" && identicalMember(harvesterWorkerID, {{"harvester-test-3", '
                    '"harvester-test-4"})'),
    ]


def test_check_prefers_the_job_submitted_for_the_worker() -> None:
    schedd = RecordingSchedd(queue=[job_ad(1, 2, cluster=50), job_ad(1, 1, cluster=60)])
    [report] = plugin_with(schedd).check([submitted(1, batch_id="60.0")])
    assert report.state == WorkerState.SUBMITTED


def test_a_held_worker_fails_and_its_job_is_removed() -> None:
    schedd = RecordingSchedd(queue=[job_ad(1, 5, HoldReason="Failed to initialize user log"), job_ad(2, 2)])
    reports = plugin_with(schedd).check([submitted(1), submitted(2)])
    assert reports[0].state == WorkerState.FAILED and reports[0].error == "held: Failed to initialize user log"
    assert reports[1].state == WorkerState.RUNNING
    assert schedd.calls[-1] == ("act", (htcondor2.JobAction.Remove, ["1001.0"], "held; removed by harvester"))
    assert schedd.queue[0]["JobStatus"] == 3


def test_kill_removes_the_workers_jobs_by_their_attribute() -> None:
    schedd = RecordingSchedd(queue=[job_ad(1, 2), job_ad(2, 1), job_ad(3, 2)])
    errors = plugin_with(schedd).kill([submitted(1), submitted(2)])

    assert errors == ["", ""]
    assert schedd.calls == [("act", (htcondor2.JobAction.Remove,
                                     f'harvesterID =?= "{INSTANCE}" && identicalMember(harvesterWorkerID, '
                                     '{"harvester-test-1", "harvester-test-2"})',
                                     "killed by harvester"))]
    assert [ad["JobStatus"] for ad in schedd.queue] == [3, 3, 2]


# Ids that would end a hand-quoted literal early: one that closes it and ORs `true` into the
# constraint (every job of the schedd, other harvesters' included), one whose last backslash
# would escape the closing quote, and others with quotes, backslashes and a line break.
HOSTILE_IDS = [
    'nope"}) || true || identicalMember(harvesterWorkerID, {"',
    "back\\",
    'q"uote-1',
    '\\"-2',
    "line\nbreak-3",
]


@pytest.mark.parametrize("worker_id", HOSTILE_IDS)
def test_no_worker_id_breaks_or_widens_the_constraint(worker_id: str) -> None:
    constraint = workers_constraint(INSTANCE, [worker_id, wid(9)])
    others = [job_ad(1, 2), job_ad(2, 1),
              classad2.ClassAd({"ClusterId": 77, "ProcId": 0, "JobStatus": 2, "harvesterID": "other",
                                "harvesterWorkerID": worker_id})]
    assert [classad2.ExprTree(constraint).eval(ad) for ad in others] == [False, False, False]
    assert classad2.ExprTree(constraint).eval(job_ad(worker_id, 2)) is True

    schedd = RecordingSchedd(queue=[*others, job_ad(worker_id, 2, cluster=500)])
    [report] = plugin_with(schedd).check([submitted(worker_id, batch_id="500.0")])
    assert (report.worker_id, report.state) == (worker_id, WorkerState.RUNNING)
    assert plugin_with(schedd).kill([submitted(worker_id)]) == [""]
    assert [ad["JobStatus"] for ad in schedd.queue] == [2, 1, 2, 3]


def test_worker_ids_differing_only_in_case_are_different_workers() -> None:
    schedd = RecordingSchedd(queue=[job_ad("Site-1", 2, cluster=10), job_ad("site-1", 2, cluster=11)])
    assert plugin_with(schedd).kill([submitted("site-1")]) == [""]
    assert [ad["JobStatus"] for ad in schedd.queue] == [2, 3]


def test_kill_names_the_workers_whose_jobs_stayed() -> None:
    schedd = RecordingSchedd(queue=[job_ad(1, 2), job_ad(2, 2, Stuck=True)])
    errors = plugin_with(schedd).kill([submitted(1), submitted(2)])
    assert errors[0] == ""
    assert "not removed" in errors[1] and "TotalPermissionDenied = 1" in errors[1]


@pytest.mark.parametrize("call", ["check", "kill"])
def test_a_schedd_that_raises_fails_the_whole_call(call: str) -> None:
    schedd = RecordingSchedd(queue=[job_ad(1, 2)], fail_with=htcondor2.HTCondorException(
        "Failed to connect to schedd"))
    with pytest.raises(PluginError, match="Failed to connect to schedd"):
        getattr(plugin_with(schedd), call)([submitted(1)])


def test_a_broken_queue_configuration_fails_the_call() -> None:
    worker = SubmittedWorker(wid(1), "site-a", "5.0", "/tmp/none", parameters={"pool": 12})
    with pytest.raises(PluginError, match="queue configuration"):
        plugin_with(RecordingSchedd()).check([worker])


def test_clean_removes_the_access_point_and_a_job_still_queued(tmp_path: Path) -> None:
    access_point = tmp_path / "worker-1"
    (access_point / "sub").mkdir(parents=True)
    (access_point / "pilot.out").write_text("done")
    # Worker 1's job is still held (its removal at the check failed); worker 2's is in the history.
    schedd = RecordingSchedd(queue=[job_ad(1, 5), job_ad(3, 2)])
    plugin_with(schedd).clean([submitted(1, access_point=str(access_point)),
                               submitted(2, access_point=str(tmp_path / "never-made"))])
    assert not access_point.exists()
    assert schedd.calls[-1] == ("act", (htcondor2.JobAction.Remove, ["1001.0"], "ended; removed by harvester"))
    assert [ad["JobStatus"] for ad in schedd.queue] == [3, 2]

    schedd.calls.clear()
    plugin_with(schedd).clean([submitted(1, access_point=str(access_point))])
    assert [call for call, _ in schedd.calls] == ["query"]


def test_clean_reports_what_it_could_not_remove() -> None:
    with pytest.raises(PluginError, match="refusing"):
        plugin_with(RecordingSchedd()).clean([submitted(3, access_point="/")])
    broken = RecordingSchedd(fail_with=htcondor2.HTCondorException("Failed to connect to schedd"))
    with pytest.raises(PluginError, match="Failed to connect to schedd"):
        plugin_with(broken).clean([submitted(3)])
