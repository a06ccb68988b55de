"""Harvester's registry on the server, over real gRPC on SQLite and PostgreSQL: instances register
and beat, report their workers (a final state sticks, a refusal is that worker's alone), belong
to the subject that registered them, take no queue from a live instance; operators' commands go
pending, delivered, done; a real pilot started with a worker id relates its jobs to its worker;
the queues' loads are counted; bad input is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from panda.common.v1 import resources_pb2
from panda.harvester.v1 import (
    harvester_service_pb2,
    instance_service_pb2,
    worker_pb2,
)
from panda.server.v1 import job_pb2, queue_pb2, queue_service_pb2
from panda.server.v1.job_service_pb2_grpc import JobServiceStub
from panda_cli.launcher import Process
from tests.pilot_stream import PilotStream
from tests.registry_support import Stubs, config, robot_channel, ts, worker
from tests.server_support import TEST_SERVER_ENV, QueueStubs, submit, token_channel, wait_for
from tools.cluster import IdentityHandle, ServerHandle, start_server

W = worker_pb2.Worker
QC = worker_pb2.QueueConfig
CMD = worker_pb2.HarvesterCommand
H = harvester_service_pb2
I = instance_service_pb2  # noqa: E741  # the InstanceService's messages, as H is HarvesterService's
HEARTBEAT_INTERVAL = 2  # seconds: an instance silent for 3 intervals is no longer alive


@pytest.fixture
def server(database_url: str, tmp_path: Path, identity: IdentityHandle) -> Iterator[ServerHandle]:
    """The server of these tests: instances beat every 2 s, so one dies within a test."""
    handle = start_server(tmp_path, database_url, {
        **identity.trust_env(), **TEST_SERVER_ENV,
        "PANDA_HARVESTER_HEARTBEAT_INTERVAL_SECONDS": str(HEARTBEAT_INTERVAL),
    })
    yield handle
    handle.stop()


@pytest.fixture
def as_caller(server: ServerHandle, identity: IdentityHandle) -> Iterator[Callable[[str], Stubs]]:
    """Stubs calling as a robot (`panda-harvester`, `panda-harvester-b`) or a person (`admin`...)."""
    channels: list[grpc.Channel] = []

    def stubs(who: str) -> Stubs:
        if who in identity.secrets:
            channel = robot_channel(server.address, identity, who)
        else:
            channel = token_channel(server.address, identity, who)
        channels.append(channel)
        return Stubs(channel)

    yield stubs
    for channel in channels:
        channel.close()


@pytest.fixture
def robot(as_caller: Callable[[str], Stubs]) -> Stubs:
    return as_caller("panda-harvester")


@pytest.fixture
def admin(as_caller: Callable[[str], Stubs]) -> Stubs:
    return as_caller("admin")


OK = grpc.StatusCode.OK.value[0]
INVALID = grpc.StatusCode.INVALID_ARGUMENT.value[0]
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION.value[0]


def field_of(status: status_pb2.Status) -> str:
    """The field a status's BadRequest names."""
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return bad.field_violations[0].field
    raise AssertionError(f"no BadRequest in {status}")


def refusal(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    """The code, message and (INVALID_ARGUMENT) field of a refused call."""
    with pytest.raises(grpc.RpcError) as refused:
        call()
    error = refused.value
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    field = field_of(status) if status is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT else ""
    return error.code(), error.details() or "", field


def test_register_heartbeat_and_read_back(robot: Stubs, admin: Stubs, local_queue: str) -> None:
    registered = robot.register("cern-h1", config())
    assert registered.heartbeat_interval_seconds == HEARTBEAT_INTERVAL
    assert abs(registered.server_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)) < timedelta(seconds=30)
    instance = registered.harvester
    assert (instance.name, instance.version, instance.host, list(instance.queues), instance.alive) == (
        "harvesters/cern-h1", "1.2.3", "harvester.example", ["local"], True)
    assert robot.heartbeat("cern-h1") == []
    # Anyone signed in reads what the instance said.
    read = admin.harvester.GetHarvester(H.GetHarvesterRequest(harvester_id="cern-h1"), timeout=10).harvester
    assert read.alive and read.heartbeat_time.ToDatetime() >= read.register_time.ToDatetime()
    listed = admin.harvester.ListHarvesters(H.ListHarvestersRequest(), timeout=10).harvesters
    assert [h.harvester_id for h in listed] == ["cern-h1"]
    stored = admin.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id="local"), timeout=10).queue_config
    expected = config(name="queueConfigs/local", harvester_id="cern-h1")
    assert stored == expected
    configs = admin.harvester.ListQueueConfigs(H.ListQueueConfigsRequest(harvester_id="cern-h1"), timeout=10)
    assert [c.queue_id for c in configs.queue_configs] == ["local"]
    # Registering again (a restart) replaces the configurations: none now.
    assert list(robot.register("cern-h1").harvester.queues) == []
    code, _, _ = refusal(lambda: admin.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id="local"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    code, message, _ = refusal(lambda: robot.heartbeat("never-registered"))
    assert code == grpc.StatusCode.NOT_FOUND and "RegisterInstance first" in message


def test_workers_reported_new_then_updated_listed_newest_first_and_counted(
    robot: Stubs, admin: Stubs, local_queue: str
) -> None:
    robot.register("h1", config())
    submitted = datetime.now(UTC) - timedelta(minutes=5)
    first = robot.report("h1", *(worker(f"h1-{n}", batch_id=f"{100 + n}", submit_time=ts(submitted),
                                        resources=resources_pb2.Resources(cores=8)) for n in (1, 2, 3)))
    assert [s.code for s in first] == [OK] * 3
    robot.report("h1", worker("h1-4"))
    started = datetime.now(UTC) - timedelta(minutes=1)
    assert [s.code for s in robot.report("h1", worker("h1-2", W.STATE_RUNNING, node="wn-7", start_time=ts(started)))
            ] == [OK]
    two = robot.worker("h1-2")
    # What the update said, over what the first report said (and what it left out stays).
    assert (two.name, two.harvester_id, two.state, two.node, two.batch_id, two.resources.cores) == (
        "workers/h1-2", "h1", W.STATE_RUNNING, "wn-7", "102", 8)
    assert two.submit_time.ToDatetime(tzinfo=UTC) == submitted
    assert two.start_time.ToDatetime(tzinfo=UTC) == started
    page = admin.workers(page_size=2)
    assert [w.worker_id for w in page.workers] == ["h1-4", "h1-3"] and page.total_size == 4
    rest = admin.workers(page_size=2, page_token=page.next_page_token)
    assert [w.worker_id for w in rest.workers] == ["h1-2", "h1-1"] and not rest.next_page_token
    assert [w.worker_id for w in admin.workers(states=[W.STATE_RUNNING]).workers] == ["h1-2"]
    assert admin.workers(queue="local", harvester_id="h1").total_size == 4
    assert admin.workers(harvester_id="h2").total_size == 0
    code, _, field = refusal(lambda: admin.workers(page_size=2, page_token=page.next_page_token, queue="local"))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    instance = admin.harvester.GetHarvester(H.GetHarvesterRequest(harvester_id="h1"), timeout=10).harvester
    assert dict(instance.worker_counts) == {"submitted": 3, "running": 1}
    queue = admin.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id="local"), timeout=10).queue_config
    assert dict(queue.worker_counts) == {"submitted": 3, "running": 1}


def test_a_final_state_sticks_and_a_refusal_is_that_workers_alone(robot: Stubs, local_queue: str) -> None:
    robot.register("h1", config())
    ended = datetime.now(UTC)
    robot.report("h1", worker("h1-1", W.STATE_FINISHED, exit_code=0, end_time=ts(ended)), worker("h1-2"))
    results = robot.report(
        "h1",
        worker("h1-1", W.STATE_RUNNING),  # out of a final state: refused
        worker("h1-2", W.STATE_RUNNING),  # applied
        worker("h1-1", W.STATE_FINISHED, node="wn-1"),  # the same final state again: a repeat, taken
        worker("h1-3", W.STATE_FAILED, error="held: out of memory", exit_code=137, end_time=ts(ended)),
    )
    assert [s.code for s in results] == [PRECONDITION, OK, OK, OK]
    assert "h1-1 is finished, a final state: it cannot become running" in results[0].message
    assert robot.worker("h1-1").state == W.STATE_FINISHED and robot.worker("h1-1").node == "wn-1"
    assert robot.worker("h1-2").state == W.STATE_RUNNING
    failed = robot.worker("h1-3")
    assert (failed.state, failed.error, failed.exit_code) == (W.STATE_FAILED, "held: out of memory", 137)
    # A worker serves one queue.
    (moved,) = robot.report("h1", worker("h1-2", W.STATE_RUNNING, queue="elsewhere"))
    assert moved.code == INVALID and field_of(moved) == "workers[0].queue"


def test_an_instance_belongs_to_the_subject_that_registered_it(
    as_caller: Callable[[str], Stubs], robot: Stubs, admin: Stubs, local_queue: str
) -> None:
    robot.register("h1", config())
    other = as_caller("panda-harvester-b")
    for call in (lambda: other.register("h1", config()), lambda: other.heartbeat("h1"),
                 lambda: other.report("h1", worker("h1-1")),
                 lambda: other.instances.CompleteCommands(I.CompleteCommandsRequest(
                     harvester_id="h1", results=[I.CommandResult(command_id=1, done=True)]), timeout=10)):
        code, message, _ = refusal(call)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "belongs to panda-harvester: panda-harvester-b may not speak for it" in message
    assert admin.workers().total_size == 0
    # An admin may speak for any instance; a user may not call InstanceService at all.
    assert admin.heartbeat("h1") == []
    code, message, _ = refusal(lambda: as_caller("alice").heartbeat("h1"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "needs one of the roles admin, harvester" in message


def test_a_worker_id_of_another_instance_is_refused_for_that_worker(robot: Stubs, local_queue: str) -> None:
    robot.register("h1", config())
    results = robot.report("h1", worker("h2-1"), worker("h1-1"), worker("h10-1"), worker("h1-"))
    assert [s.code for s in results] == [INVALID, OK, INVALID, INVALID]
    assert [field_of(results[i]) for i in (0, 2, 3)] == ["workers[0].worker_id", "workers[2].worker_id",
                                                        "workers[3].worker_id"]
    assert "must start with 'h1-'" in results[0].message
    assert robot.workers().total_size == 1


def test_a_queue_of_a_live_instance_is_not_taken_a_dead_ones_is(
    as_caller: Callable[[str], Stubs], robot: Stubs, admin: Stubs, local_queue: str
) -> None:
    robot.register("h1", config())
    other = as_caller("panda-harvester-b")
    code, message, _ = refusal(lambda: other.register("h2", config()))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert "queue_configs[0].queue_id: queue local is provisioned by harvester h1, alive" in message
    assert robot.heartbeat("h1") == []
    time.sleep(3 * HEARTBEAT_INTERVAL + 1)
    h1 = admin.harvester.GetHarvester(H.GetHarvesterRequest(harvester_id="h1"), timeout=10).harvester
    assert not h1.alive
    assert list(other.register("h2", config()).harvester.queues) == ["local"]
    h1 = admin.harvester.GetHarvester(H.GetHarvesterRequest(harvester_id="h1"), timeout=10).harvester
    assert list(h1.queues) == []
    assert admin.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id="local"), timeout=10
                                          ).queue_config.harvester_id == "h2"


def test_commands_go_pending_delivered_done(robot: Stubs, admin: Stubs, as_caller: Callable[[str], Stubs],
                                            local_queue: str) -> None:
    robot.register("h1", config())
    robot.report("h1", worker("h1-1", W.STATE_RUNNING), worker("h1-2", W.STATE_FINISHED))
    kill = admin.harvester.KillWorker(H.KillWorkerRequest(worker_id="h1-1", reason="draining the site"),
                                      timeout=10).command
    assert (kill.harvester_id, kill.kind, kill.worker_id, kill.state, kill.reason, kill.issuer) == (
        "h1", CMD.KIND_KILL_WORKER, "h1-1", CMD.STATE_PENDING, "draining the site", "admin")
    limits = admin.harvester.SetQueueLimits(H.SetQueueLimitsRequest(
        queue_id="local", limits=worker_pb2.QueueLimits(max_workers=20, queue_limit_workers=8)), timeout=10).command
    assert (limits.kind, limits.queue_id, limits.limits.max_workers, limits.limits.HasField("online")) == (
        CMD.KIND_SET_QUEUE_LIMITS, "local", 20, False)
    delivered = robot.heartbeat("h1")
    assert [(c.command_id, c.state) for c in delivered] == [(kill.command_id, CMD.STATE_DELIVERED),
                                                            (limits.command_id, CMD.STATE_DELIVERED)]
    # Delivered and not done: they come again.
    assert [c.command_id for c in robot.heartbeat("h1")] == [kill.command_id, limits.command_id]
    robot.instances.CompleteCommands(I.CompleteCommandsRequest(harvester_id="h1", results=[
        I.CommandResult(command_id=kill.command_id, done=True, result="scancel 101"),
        I.CommandResult(command_id=limits.command_id, done=True)]), timeout=10)
    assert robot.heartbeat("h1") == []
    # Completed twice: the first word stands.
    robot.instances.CompleteCommands(I.CompleteCommandsRequest(harvester_id="h1", results=[
        I.CommandResult(command_id=kill.command_id, done=False, result="no such job")]), timeout=10)
    listed = admin.harvester.ListHarvesterCommands(H.ListHarvesterCommandsRequest(harvester_id="h1"),
                                                   timeout=10).commands
    assert [(c.command_id, c.state, c.result) for c in listed] == [
        (limits.command_id, CMD.STATE_DONE, ""), (kill.command_id, CMD.STATE_DONE, "scancel 101")]
    # Limits the instance applied are the queue's.
    local = admin.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id="local"), timeout=10).queue_config
    assert (local.max_workers, local.queue_limit_workers, local.max_new_workers_per_cycle) == (20, 8, 2)
    # Refusals: an ended worker, an unknown one, a queue no instance provisions, someone else's command.
    code, message, _ = refusal(lambda: admin.harvester.KillWorker(H.KillWorkerRequest(worker_id="h1-2"), timeout=10))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already finished" in message
    code, _, _ = refusal(lambda: admin.harvester.KillWorker(H.KillWorkerRequest(worker_id="h1-9"), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND
    code, message, _ = refusal(lambda: admin.harvester.SetQueueLimits(H.SetQueueLimitsRequest(
        queue_id="nowhere", limits=worker_pb2.QueueLimits(max_workers=1)), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "provisioned by no harvester instance" in message
    code, _, _ = refusal(lambda: as_caller("alice").harvester.KillWorker(H.KillWorkerRequest(worker_id="h1-1"),
                                                                         timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    admin.register("h-admin")
    code, message, _ = refusal(lambda: admin.instances.CompleteCommands(I.CompleteCommandsRequest(
        harvester_id="h-admin", results=[I.CommandResult(command_id=kill.command_id, done=True)]), timeout=10))
    assert code == grpc.StatusCode.NOT_FOUND and "results[0].command_id" in message


def test_a_pilot_with_a_worker_id_relates_its_jobs_to_its_worker(
    robot: Stubs, admin: Stubs, jobs_stub: JobServiceStub, local_queue: str, start_pilot: Callable[..., Process],
) -> None:
    robot.register("h1", config())
    robot.report("h1", worker("h1-1", W.STATE_RUNNING))
    (job,) = submit(jobs_stub, job_pb2.Job(queue="local", command=["true"]))
    start_pilot("local", "--worker-id", "h1-1")
    done = wait_for(jobs_stub, job.job_id)
    assert done.state == job_pb2.Job.STATE_FINISHED and done.worker_id == "h1-1"
    assert list(robot.worker("h1-1").job_ids) == [job.job_id]
    assert admin.worker("h1-1").job_ids == [job.job_id]


def _queue(queues: QueueStubs, queue_id: str, status: int = queue_pb2.Queue.STATUS_ONLINE) -> None:
    queues.CreateQueue(queue_service_pb2.CreateQueueRequest(
        queue=queue_pb2.Queue(queue_id=queue_id, status=status)), timeout=10)  # type: ignore[arg-type]


def test_queue_loads_count_waiting_starting_running_and_the_largest_job(
    robot: Stubs, channel: grpc.Channel, queues_stub: QueueStubs, jobs_stub: JobServiceStub,
) -> None:
    _queue(queues_stub, "busy")
    _queue(queues_stub, "quiet")
    _queue(queues_stub, "off", queue_pb2.Queue.STATUS_OFFLINE)
    _queue(queues_stub, "testing", queue_pb2.Queue.STATUS_TEST)

    def job(queue: str, cores: int = 1, memory: int = 1000, walltime: int = 600, disk: int = 0) -> job_pb2.Job:
        return job_pb2.Job(queue=queue, command=["true"], resources=resources_pb2.Resources(
            cores=cores, memory_mb=memory, walltime_seconds=walltime, disk_mb=disk))

    submit(jobs_stub, job("busy", cores=1, memory=500), job("busy", cores=2), job("busy", cores=1, memory=4000))
    submit(jobs_stub, job("busy", cores=1, memory=3000, walltime=100, disk=50), job("busy", cores=1, walltime=100))
    submit(jobs_stub, job("off", cores=16))
    # A pilot of one core takes the first two one-core jobs (sent), and starts one of them.
    pilot = PilotStream(channel, "loads-pilot", "busy", cores=1)
    try:
        pilot.request_jobs(2)
        taken = list(pilot.next("job_assignments").job_assignments.jobs)
        if len(taken) < 2:
            taken += pilot.next("job_assignments").job_assignments.jobs
        pilot.update(taken[0].job_id, taken[0].attempt, job_pb2.Job.STATE_RUNNING)
        wait_for(jobs_stub, taken[0].job_id, lambda j: j.state == job_pb2.Job.STATE_RUNNING, what="running")
        answer = robot.instances.GetQueueLoads(I.GetQueueLoadsRequest(), timeout=10)
        loads = {load.queue_id: load for load in answer.loads}
    finally:
        pilot.close()
    assert sorted(loads) == ["busy", "off", "quiet", "testing"]
    busy = loads["busy"]
    assert (busy.online, busy.activated_jobs, busy.starting_jobs, busy.running_jobs) == (True, 3, 1, 1)
    # Field by field, over the three still waiting.
    assert busy.largest_job == resources_pb2.Resources(cores=2, memory_mb=3000, walltime_seconds=600, disk_mb=50)
    assert (loads["off"].online, loads["off"].activated_jobs, loads["off"].largest_job.cores) == (False, 1, 16)
    assert loads["testing"].online and loads["quiet"].online
    assert loads["quiet"].activated_jobs == 0 and loads["quiet"].largest_job == resources_pb2.Resources()
    asked = robot.instances.GetQueueLoads(I.GetQueueLoadsRequest(queue_ids=["quiet", "no-such-queue"]), timeout=10)
    assert [load.queue_id for load in asked.loads] == ["quiet"]


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"max_workers": -1}, "queue_configs[0].max_workers", "between 0 and"),
    ({"queue_limit_workers": 11}, "queue_configs[0].queue_limit_workers", "must not exceed max_workers (10)"),
    ({"max_new_workers_per_cycle": 11}, "queue_configs[0].max_new_workers_per_cycle", "must not exceed"),
    ({"plugin": "pbs"}, "queue_configs[0].plugin", "local, slurm, htcondor, kubernetes"),
    ({"map_type": 0}, "queue_configs[0].map_type", "map_type is required"),
    ({"queue_id": "no-such-queue"}, "queue_configs[0].queue_id", "not a queue of the server"),
    ({"queue_id": "bad queue"}, "queue_configs[0].queue_id", "not a queue id"),
    ({"plugin_parameters": {"image": "not json"}}, "queue_configs[0].plugin_parameters[image]", "JSON text"),
    ({"messenger": QC.MESSENGER_SHARED_FILES}, "queue_configs[0].messenger", "push map_type"),
])
def test_a_bad_queue_configuration_is_refused_naming_its_field(
    robot: Stubs, local_queue: str, change: dict[str, Any], field: str, words: str
) -> None:
    code, message, named = refusal(lambda: robot.register("h1", config(**change)))
    assert (code, named) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert words in message


def test_bad_input_is_invalid_argument_naming_the_field(robot: Stubs, admin: Stubs, local_queue: str) -> None:
    code, _, field = refusal(lambda: robot.register("not an id"))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "harvester_id")
    code, _, field = refusal(lambda: robot.register("h1", config(), config()))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "queue_configs[1].queue_id")
    robot.register("h1", config())
    future = datetime.now(UTC) + timedelta(days=1)
    results = robot.report(
        "h1",
        worker("h1-1", W.STATE_UNSPECIFIED),
        worker("h1-2", plugin="pbs"),
        worker("h1-3", submit_time=ts(future)),
        worker("h1-4", W.STATE_RUNNING, end_time=ts(datetime.now(UTC))),
        worker("h1-5", node="wn\x00"),
        worker("h1-6", W.STATE_FINISHED, start_time=ts(datetime.now(UTC)),
               end_time=ts(datetime.now(UTC) - timedelta(hours=1))),
        worker("h1-7", resources=resources_pb2.Resources(memory_mb=-1)),
        worker("h1-8", W.STATE_RUNNING),
    )
    assert [s.code for s in results] == [INVALID] * 7 + [OK]
    assert [field_of(s) for s in results[:7]] == [
        "workers[0].state", "workers[1].plugin", "workers[2].submit_time", "workers[3].end_time", "workers[4].node",
        "workers[5].end_time", "workers[6].resources.memory_mb"]
    assert results[0].message.startswith("workers[0].state: a worker state is required")
    code, _, _ = refusal(lambda: robot.report("h1", *(worker(f"h1-{n}") for n in range(1001))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    code, _, field = refusal(lambda: admin.harvester.SetQueueLimits(H.SetQueueLimitsRequest(
        queue_id="local", limits=worker_pb2.QueueLimits(queue_limit_workers=11)), timeout=10))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "limits.queue_limit_workers")
    code, _, field = refusal(lambda: admin.harvester.SetQueueLimits(H.SetQueueLimitsRequest(
        queue_id="local", limits=worker_pb2.QueueLimits()), timeout=10))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "limits")
    code, _, field = refusal(lambda: admin.workers(states=[42]))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "states[0]")
    code, _, field = refusal(lambda: robot.instances.GetQueueLoads(I.GetQueueLoadsRequest(queue_ids=["a b"]),
                                                                   timeout=10))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "queue_ids[0]")
    code, _, field = refusal(lambda: robot.instances.CompleteCommands(I.CompleteCommandsRequest(
        harvester_id="h1", results=[I.CommandResult(command_id=0)]), timeout=10))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "results[0].command_id")
    code, _, field = refusal(lambda: admin.worker("h1-\x00"))
    assert (code, field) == (grpc.StatusCode.INVALID_ARGUMENT, "worker_id")
