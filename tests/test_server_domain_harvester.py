"""Harvester's registry rules on the server, with no database: what a worker report must be, what
it does to a known worker (a final state is final), a batch decided worker by worker, who may
speak for an instance, when one is alive and may keep its queues, queue configurations and
limits, and how commands end. And the shared contract: worker ids and states."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panda_runtime.contracts import Violation
from panda_runtime.contracts import harvester as contract
from panda_runtime.service.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from panda_runtime.service.principals import Principal
from server_svc.domain.harvester import (
    HarvesterCommand,
    HarvesterInstance,
    QueueConfig,
    apply_limits,
    check_queue_configs,
    check_queues_free,
    check_server_queues,
    check_speaker,
    complete_command,
    is_alive,
    kill_worker_command,
    queue_online,
    set_limits_command,
)
from server_svc.domain.harvester_workers import (
    Worker,
    WorkerReport,
    apply_worker_report,
    check_worker_report,
    decide_reports,
    readable_worker_ids,
)

NOW = datetime(2026, 12, 20, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)


def report(worker_id: str = "h1-1", state: str = "submitted", **fields: object) -> WorkerReport:
    values: dict[str, object] = {
        "worker_id": worker_id, "harvester_id": "", "queue": "local", "plugin": "slurm", "batch_id": "", "state": state,
        "node": "", "cores": 0, "memory_mb": 0, "walltime_seconds": 0, "disk_mb": 0, "error": "", "exit_code": 0,
        "submit_time": None, "start_time": None, "end_time": None, **fields,
    }
    return WorkerReport(**values)  # type: ignore[arg-type]


def stored(**fields: object) -> Worker:
    worker = apply_worker_report(None, report(batch_id="1001", cores=8, submit_time=EARLIER), "h1", EARLIER)
    return replace(worker, **fields)  # type: ignore[arg-type]


def refused_field(reported: WorkerReport, provisioned: tuple[str, ...] = ("local",)) -> str:
    with pytest.raises(InvalidArgument) as refused:
        check_worker_report(reported, "workers[3]", "h1", provisioned, NOW)
    assert refused.value.message.startswith(refused.value.details[0].field_violations[0].field)
    return str(refused.value.details[0].field_violations[0].field)


def test_a_good_report_passes() -> None:
    check_worker_report(report(state="finished", submit_time=EARLIER, start_time=EARLIER, end_time=NOW,
                               exit_code=1, error="pilot failed"), "workers[0]", "h1", {"local"}, NOW)


@pytest.mark.parametrize(("changes", "field"), [
    ({"worker_id": "h2-1"}, "workers[3].worker_id"),
    ({"worker_id": "h1-"}, "workers[3].worker_id"),
    ({"worker_id": "h1-" + "9" * 126}, "workers[3].worker_id"),
    ({"worker_id": "h1-a b"}, "workers[3].worker_id"),
    ({"harvester_id": "h2"}, "workers[3].harvester_id"),
    ({"queue": ""}, "workers[3].queue"),
    ({"queue": "a b"}, "workers[3].queue"),
    ({"queue": "other"}, "workers[3].queue"),
    ({"plugin": ""}, "workers[3].plugin"),
    ({"state": ""}, "workers[3].state"),
    ({"state": "#42"}, "workers[3].state"),
    ({"batch_id": "x" * 257}, "workers[3].batch_id"),
    ({"node": "wn\x00"}, "workers[3].node"),
    ({"error": "e" * 4097}, "workers[3].error"),
    ({"cores": -1}, "workers[3].resources.cores"),
    ({"submit_time": datetime(1970, 1, 1, tzinfo=UTC)}, "workers[3].submit_time"),
    ({"start_time": NOW + timedelta(hours=2)}, "workers[3].start_time"),
    ({"submit_time": NOW, "start_time": EARLIER}, "workers[3].start_time"),
    ({"end_time": NOW}, "workers[3].end_time"),
    ({"state": "failed", "start_time": NOW, "end_time": EARLIER}, "workers[3].end_time"),
])
def test_each_rule_of_a_report_names_its_field(changes: dict[str, Any], field: str) -> None:
    assert refused_field(report(**changes)) == field


def test_a_new_worker_is_recorded_as_reported_by_its_instance() -> None:
    worker = apply_worker_report(None, report(batch_id="1001", cores=8), "h1", NOW)
    assert (worker.harvester_id, worker.state, worker.batch_id, worker.cores, worker.create_time,
            worker.update_time) == ("h1", "submitted", "1001", 8, NOW, NOW)


def test_an_update_changes_what_it_says_and_keeps_what_it_leaves_out() -> None:
    updated = apply_worker_report(stored(), report(state="running", node="wn-1", start_time=NOW), "h1", NOW)
    assert (updated.state, updated.node, updated.batch_id, updated.cores, updated.submit_time, updated.start_time,
            updated.create_time, updated.update_time) == ("running", "wn-1", "1001", 8, EARLIER, NOW, EARLIER, NOW)
    ended = apply_worker_report(updated, report(state="finished", end_time=NOW), "h1", NOW)
    assert (ended.exit_code, ended.node, ended.end_time) == (0, "wn-1", NOW)


@pytest.mark.parametrize("final", sorted(contract.FINAL_WORKER_STATES))
@pytest.mark.parametrize("new", contract.WORKER_STATES)
def test_a_final_state_is_final(final: str, new: str) -> None:
    worker = stored(state=final)
    if new == final:
        assert apply_worker_report(worker, report(state=new), "h1", NOW).state == final
        return
    with pytest.raises(FailedPrecondition) as refused:
        apply_worker_report(worker, report(state=new), "h1", NOW)
    assert f"is {final}, a final state: it cannot become {new}" in refused.value.message


@pytest.mark.parametrize("live", sorted(contract.LIVE_WORKER_STATES))
@pytest.mark.parametrize("new", contract.WORKER_STATES)
def test_a_live_worker_may_go_to_any_state(live: str, new: str) -> None:
    assert apply_worker_report(stored(state=live), report(state=new), "h1", NOW).state == new


def test_a_worker_keeps_its_queue() -> None:
    with pytest.raises(FailedPrecondition, match="serves queue local, not other"):
        apply_worker_report(stored(), report(queue="other"), "h1", NOW)


def test_a_known_worker_is_reported_on_after_its_instance_stopped_provisioning_its_queue() -> None:
    decision = decide_reports("h1", [report("h1-1", "finished"), report("h1-2")], {"h1-1": stored(state="running")},
                              {"other"}, NOW)
    assert decision.results[0] is None and [w.state for w in decision.updates] == ["finished"]
    assert isinstance(decision.results[1], InvalidArgument) and not decision.inserts


def test_a_batch_is_decided_worker_by_worker_in_order() -> None:
    known = {"h1-1": stored(state="finished"), "h1-2": stored(worker_id="h1-2")}
    decision = decide_reports("h1", [
        report("h1-1", "running"),  # refused: final
        report("h1-2", "running"),
        report("h2-9"),  # refused: not this instance's
        report("h1-3"),  # new
        report("h1-3", "running"),  # the same new worker again, on top of the one before
    ], known, {"local"}, NOW)
    assert [type(result).__name__ if result else None for result in decision.results] == [
        "FailedPrecondition", None, "InvalidArgument", None, None]
    assert [(w.worker_id, w.state) for w in decision.inserts] == [("h1-3", "running")]
    assert [(w.worker_id, w.state) for w in decision.updates] == [("h1-2", "running")]
    assert known["h1-1"].state == "finished"
    assert readable_worker_ids([report("h1-2"), report("h2-1"), report("h1-2"), report("h1-\x00")], "h1") == ["h1-2"]


ALICE_ROBOT = Principal("panda-harvester", grants=frozenset({("panda", "harvester")}))
OTHER_ROBOT = Principal("panda-harvester-b", grants=frozenset({("panda", "harvester")}))
ADMIN = Principal("root", grants=frozenset({("panda", "admin")}))


def instance(harvester_id: str = "h1", heartbeat: datetime = NOW) -> HarvesterInstance:
    return HarvesterInstance(harvester_id, "panda-harvester", "1.0", "host", ["local"], EARLIER, heartbeat)


def test_an_instance_is_spoken_for_by_its_subject_or_an_admin() -> None:
    check_speaker(instance(), "h1", ALICE_ROBOT)
    check_speaker(instance(), "h1", ADMIN)
    check_speaker(None, "h1", OTHER_ROBOT, registering=True)
    with pytest.raises(PermissionDenied, match="belongs to panda-harvester: panda-harvester-b may not speak for it"):
        check_speaker(instance(), "h1", OTHER_ROBOT)
    with pytest.raises(NotFound, match="RegisterInstance first"):
        check_speaker(None, "h1", ALICE_ROBOT)


def test_alive_within_three_heartbeats() -> None:
    assert is_alive(NOW - timedelta(seconds=180), NOW, 60)
    assert not is_alive(NOW - timedelta(seconds=181), NOW, 60)


def test_a_live_instances_queue_is_not_taken_a_dead_ones_is() -> None:
    owners = {"local": instance("h2", heartbeat=NOW - timedelta(seconds=100))}
    with pytest.raises(AlreadyExists, match=r"queue_configs\[1\].queue_id: queue local is provisioned by harvester h2"):
        check_queues_free("h1", ["other", "local"], owners, NOW, 60)
    check_queues_free("h2", ["local"], owners, NOW, 60)  # its own
    check_queues_free("h1", ["local"], {"local": instance("h2", heartbeat=NOW - timedelta(seconds=181))}, NOW, 60)


def config(**fields: object) -> QueueConfig:
    values: dict[str, object] = {
        "queue_id": "local", "harvester_id": "h1", "online": True, "map_type": "pull", "queue_limit_workers": 4,
        "max_workers": 10, "max_new_workers_per_cycle": 2, "queue_limit_jobs": 0, "jobs_per_worker": 0, "cores": 1,
        "memory_mb": 2000, "walltime_seconds": 3600, "disk_mb": 0, "plugin": "slurm",
        "plugin_parameters": {"partition": '"short"'}, "messenger": "grpc", "worker_queued_timeout_seconds": 600,
        "worker_heartbeat_timeout_seconds": 1800, "update_time": NOW, **fields,
    }
    return QueueConfig(**values)  # type: ignore[arg-type]


def test_good_configurations_pass() -> None:
    check_queue_configs([config(), config(queue_id="push", map_type="many_to_one", jobs_per_worker=4,
                                          queue_limit_jobs=20, messenger="shared_files", plugin="kubernetes")])
    check_server_queues([config()], {"local"})


@pytest.mark.parametrize(("changes", "field"), [
    ({"queue_id": "a b"}, "queue_configs[0].queue_id"),
    ({"map_type": ""}, "queue_configs[0].map_type"),
    ({"messenger": "#7"}, "queue_configs[0].messenger"),
    ({"plugin": "pbs"}, "queue_configs[0].plugin"),
    ({"max_workers": -1}, "queue_configs[0].max_workers"),
    ({"queue_limit_workers": 11}, "queue_configs[0].queue_limit_workers"),
    ({"max_new_workers_per_cycle": 11}, "queue_configs[0].max_new_workers_per_cycle"),
    ({"queue_limit_jobs": 5}, "queue_configs[0].queue_limit_jobs"),
    ({"messenger": "shared_files"}, "queue_configs[0].messenger"),
    ({"map_type": "many_to_one", "jobs_per_worker": 1}, "queue_configs[0].jobs_per_worker"),
    ({"jobs_per_worker": 3}, "queue_configs[0].jobs_per_worker"),
    ({"memory_mb": -5}, "queue_configs[0].resources.memory_mb"),
    ({"worker_queued_timeout_seconds": -1}, "queue_configs[0].worker_queued_timeout_seconds"),
    ({"plugin_parameters": {"partition": "short"}}, "queue_configs[0].plugin_parameters[partition]"),
    ({"plugin_parameters": {"": "1"}}, "queue_configs[0].plugin_parameters"),
])
def test_each_rule_of_a_configuration_names_its_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        check_queue_configs([config(**changes)])
    assert refused.value.details[0].field_violations[0].field == field


def test_a_queue_is_configured_once_and_must_be_the_servers() -> None:
    with pytest.raises(InvalidArgument, match=r"queue_configs\[1\].queue_id: queue local is listed twice"):
        check_queue_configs([config(), config()])
    with pytest.raises(InvalidArgument, match="not a queue of the server"):
        check_server_queues([config()], {"other"})


@pytest.mark.parametrize(("status", "online"), [("online", True), ("test", True), ("brokeroff", True),
                                                ("offline", False)])
def test_a_queue_takes_workers_while_its_pilots_get_jobs(status: str, online: bool) -> None:
    assert queue_online(status) is online


def test_limits_are_checked_as_they_will_be_and_applied_as_given() -> None:
    command = set_limits_command(config(), {"max_workers": 20, "online": False}, "root", NOW)
    assert (command.kind, command.harvester_id, command.queue_id, command.limits, command.state) == (
        "set_queue_limits", "h1", "local", {"max_workers": 20, "online": False}, "pending")
    applied = apply_limits(config(), command.limits)
    assert (applied.max_workers, applied.online, applied.queue_limit_workers) == (20, False, 4)
    for limits, field in (({}, "limits"), ({"queue_limit_workers": 11}, "limits.queue_limit_workers"),
                          ({"max_workers": 3}, "limits.max_workers"), ({"max_workers": -1}, "limits.max_workers"),
                          ({"queue_limit_jobs": 3}, "limits.queue_limit_jobs")):
        with pytest.raises(InvalidArgument) as refused:
            set_limits_command(config(), limits, "root", NOW)
        assert refused.value.details[0].field_violations[0].field == field, limits


def test_a_kill_is_for_a_live_worker() -> None:
    command = kill_worker_command(stored(state="running"), "draining", "root", NOW)
    assert (command.kind, command.harvester_id, command.worker_id, command.reason) == (
        "kill_worker", "h1", "h1-1", "draining")
    with pytest.raises(FailedPrecondition, match="already missed"):
        kill_worker_command(stored(state="missed"), "", "root", NOW)
    with pytest.raises(InvalidArgument):
        kill_worker_command(stored(), "\x00", "root", NOW)


def test_a_command_ends_once() -> None:
    command = HarvesterCommand(1, "h1", "kill_worker", "h1-1", "", {}, "delivered", "", "", "root", EARLIER, EARLIER)
    assert complete_command(command, False, "no such job", NOW)
    assert (command.state, command.result, command.update_time) == ("failed", "no such job", NOW)
    assert not complete_command(command, True, "done after all", NOW)
    assert (command.state, command.result) == ("failed", "no such job")


def test_worker_ids_are_their_instances() -> None:
    assert contract.check_worker_id("cern_h1.a-17", "cern_h1.a") == "cern_h1.a-17"
    with pytest.raises(Violation, match="must start with 'h1-'"):
        contract.check_worker_id("h10-1", "h1")
    with pytest.raises(Violation, match="harvester_id is required"):
        contract.check_harvester_id("")
    assert set(contract.WORKER_STATES) == contract.LIVE_WORKER_STATES | contract.FINAL_WORKER_STATES


@given(st.integers(min_value=0, max_value=2**31 - 1), st.integers(min_value=0, max_value=2**31 - 1))
def test_waiting_workers_never_exceed_live_ones(waiting: int, most: int) -> None:
    limits = {"queue_limit_workers": waiting, "max_workers": most}
    try:
        contract.check_queue_limits(limits, "limits")
    except Violation as violation:
        assert waiting > most and violation.field == "limits.queue_limit_workers"
    else:
        assert waiting <= most
