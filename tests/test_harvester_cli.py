"""The harvester commands as a user types them, against a real server (SQLite and PostgreSQL)
whose registry a harvester robot fills: `panda workers`, `panda worker show|kill`, `panda harvester
status|commands`, the harvester part of `panda queue show`, and `panda job show` naming the
worker of a job's pilot. What each prints, and the exit code it returns."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import grpc
import pytest

from panda.harvester.v1 import worker_pb2
from panda.server.v1 import job_pb2
from panda.server.v1.job_service_pb2_grpc import JobServiceStub
from panda_cli.main import main
from tests.cli_support import Result
from tests.pilot_stream import PilotStream
from tests.registry_support import Stubs, config, robot_channel, worker
from tests.server_support import submit, wait_for
from tools.cluster import IdentityHandle, ServerHandle

W = worker_pb2.Worker
Panda = Callable[..., Result]


@pytest.fixture
def panda(server: ServerHandle, capsys: pytest.CaptureFixture[str]) -> Panda:
    """`panda --server ADDR ARGS...` in-process, as admin: exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(["--server", server.address, *argv])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@pytest.fixture
def robot(server: ServerHandle, identity: IdentityHandle) -> Iterator[Stubs]:
    with robot_channel(server.address, identity) as channel:
        yield Stubs(channel)


@pytest.fixture
def registry(robot: Stubs, local_queue: str) -> Stubs:
    """Instance h1 provisions queue local, and has reported three workers: two submitted (one of
    them then running on node wn-7), one finished."""
    robot.register("h1", config())
    robot.report("h1", worker("h1-1", batch_id="101"), worker("h1-2", batch_id="102"),
                 worker("h1-3", W.STATE_FINISHED, batch_id="103"))
    robot.report("h1", worker("h1-2", W.STATE_RUNNING, node="wn-7"))
    return robot


def test_workers_table_filters_pages_and_json(panda: Panda, registry: Stubs) -> None:
    listed = panda("workers")
    assert listed.code == 0, listed.err
    header, *rows, footer = listed.lines()
    assert header.split() == ["ID", "STATE", "QUEUE", "PLUGIN", "BATCH", "ID", "NODE", "JOBS", "SUBMITTED", "UPDATED"]
    assert [row.split()[:6] for row in rows] == [
        ["h1-3", "finished", "local", "local", "103", "-"],
        ["h1-2", "running", "local", "local", "102", "wn-7"],
        ["h1-1", "submitted", "local", "local", "101", "-"],
    ]
    assert footer == "showing 3 of 3"
    running = panda("workers", "--state", "running", "--state", "submitted", "--harvester", "h1", "--queue", "local")
    assert [line.split()[0] for line in running.lines()[1:-1]] == ["h1-2", "h1-1"]
    first = panda("workers", "--limit", "2")
    token = first.lines()[-1].rsplit(" ", 1)[-1]
    assert first.lines()[-1].startswith("showing 2 of 3; next page: same command with --page-token")
    assert [line.split()[0] for line in panda("workers", "--limit", "2", "--page-token", token).lines()[1:-1]] == [
        "h1-1"]
    as_json = json.loads(panda("workers", "--json", "--state", "finished").out)
    assert [w["worker_id"] for w in as_json["workers"]] == ["h1-3"] and as_json["total_size"] == 1
    assert panda("workers", "--harvester", "nobody").out.splitlines() == ["no workers", "showing 0 of 0"]
    bad = panda("workers", "--state", "sleeping")
    assert bad.code == 2 and "unknown worker state 'sleeping' (choose from submitted, ready, running" in bad.err


def test_worker_show_with_its_jobs_and_job_show_naming_the_worker(
    panda: Panda, registry: Stubs, channel: grpc.Channel, jobs_stub: JobServiceStub
) -> None:
    (job,) = submit(jobs_stub, job_pb2.Job(queue="local", command=["true"], label="on-a-worker"))
    pilot = PilotStream(channel, "cli-pilot", worker_id="h1-2")
    try:
        pilot.request_jobs(1)
        assert pilot.next_job().job_id == job.job_id
    finally:
        pilot.close()
    shown = panda("worker", "show", "h1-2")
    assert shown.code == 0, shown.err
    fields = dict(line.split(":", 1) for line in shown.out.split("\n\n")[0].splitlines())
    assert {k: v.strip() for k, v in fields.items() if k in ("worker", "state", "harvester", "node", "jobs")} == {
        "worker": "h1-2", "state": "running", "harvester": "h1", "node": "wn-7", "jobs": str(job.job_id)}
    jobs_part = shown.out.split("\n\n")[1].splitlines()
    assert jobs_part[0] == "jobs of its pilot:" and jobs_part[2].split()[:2] == [str(job.job_id), "sent"]
    assert json.loads(panda("worker", "show", "h1-2", "--json").out)["job_ids"] == [str(job.job_id)]
    assert "jobs:       none yet" in panda("worker", "show", "h1-1").out
    sent = wait_for(jobs_stub, job.job_id, lambda j: j.worker_id == "h1-2", what="its worker")
    assert sent.worker_id == "h1-2"
    assert "harvester worker:  h1-2" in panda("job", "show", str(job.job_id)).out
    missing = panda("worker", "show", "h1-99")
    assert missing.code == 3 and "worker h1-99 not found" in missing.err


def test_worker_kill_and_the_instances_commands(panda: Panda, registry: Stubs) -> None:
    killed = panda("worker", "kill", "h1-2", "--reason", "draining wn-7")
    assert killed.code == 0, killed.err
    assert killed.out.strip() == "kill of worker h1-2 queued for harvester h1 (command 1; panda harvester commands h1)"
    panda("worker", "kill", "h1-1")
    commands = panda("harvester", "commands", "h1")
    header, *rows = commands.lines()
    assert header.split() == ["ID", "KIND", "TARGET", "STATE", "ISSUER", "CREATED", "RESULT/REASON"]
    assert [row.split()[:5] for row in rows] == [["2", "kill_worker", "h1-1", "pending", "admin"],
                                                ["1", "kill_worker", "h1-2", "pending", "admin"]]
    assert rows[1].endswith("draining wn-7")
    registry.heartbeat("h1")
    assert [c["state"] for c in json.loads(panda("harvester", "commands", "h1", "--json").out)["commands"]] == [
        "STATE_DELIVERED", "STATE_DELIVERED"]
    ended = panda("worker", "kill", "h1-3")
    assert ended.code == 1 and "worker h1-3 is already finished" in ended.err
    assert panda("worker", "kill", "h1-99").code == 3
    assert panda("harvester", "commands", "nobody").code == 3


def test_harvester_status_and_queue_show(panda: Panda, registry: Stubs) -> None:
    status = panda("harvester", "status")
    assert status.code == 0, status.err
    header, row = status.lines()
    assert header.split() == ["ID", "ALIVE", "HEARTBEAT", "VERSION", "HOST", "QUEUES", "WORKERS"]
    assert row.split()[:2] == ["h1", "yes"]
    assert row.split()[-4:] == ["harvester.example", "local", "submitted=1", "running=1"]
    assert json.loads(panda("harvester", "status", "--json").out)["harvesters"][0]["alive"] is True
    shown = panda("queue", "show", "local")
    assert shown.code == 0, shown.err
    queue_part, harvester_part = shown.out.rstrip("\n").split("\n\n")
    assert queue_part.splitlines()[0].split() == ["queue:", "local"]
    lines = harvester_part.splitlines()
    assert lines[0] == "harvester:"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert fields["harvester"] == "h1" and fields["workers"] == "submitted=1 running=1"
    assert fields["limits"] == "max 10 workers, 4 waiting, 2 new per cycle"
    assert fields["plugin"] == "local slots=4" and fields["map type"] == "pull"
    as_json = json.loads(panda("queue", "show", "local", "--json").out)
    assert as_json["queue_id"] == "local" and as_json["harvester_config"]["harvester_id"] == "h1"
    registry.register("h1")  # provisions nothing any more
    again = panda("queue", "show", "local")
    assert "harvester:" not in again.out and "harvester_config" not in json.loads(
        panda("queue", "show", "local", "--json").out)


def test_no_harvester_yet(panda: Panda) -> None:
    assert panda("harvester", "status").out.strip() == (
        "no harvester instances (an instance appears here once it registers)")
    assert panda("workers").out.splitlines() == ["no workers", "showing 0 of 0"]
