"""The commands against an in-process fake of JobService and QueueService: what they send
(request ids, deadlines, filters, masks, resume cursors) and what they print and return."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from google.rpc import status_pb2
from panda.server.v1 import (
    job_pb2,
    job_service_pb2,
    job_service_pb2_grpc,
    queue_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
)

from panda_cli import jobs as jobs_module
from panda_cli.main import main

RUNNING = job_pb2.Job.STATE_RUNNING
FINISHED = job_pb2.Job.STATE_FINISHED
FAILED = job_pb2.Job.STATE_FAILED


def event(cursor: int, state: int, reason: str = "", job_id: int = 7, attempt: int = 1) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(cursor=cursor, job_id=job_id, attempt=attempt, state=state, reason=reason)


@dataclass
class WatchStep:
    events: list[job_pb2.JobEvent]
    then_abort: bool = False


@dataclass
class FakeJobs(job_service_pb2_grpc.JobServiceServicer):
    jobs: dict[int, job_pb2.Job] = field(default_factory=dict)
    submits: list[job_service_pb2.SubmitJobsRequest] = field(default_factory=list)
    unavailable_submits: int = 0
    lists: list[job_service_pb2.ListJobsRequest] = field(default_factory=list)
    watch_script: list[WatchStep] = field(default_factory=list)
    watches: list[job_service_pb2.WatchJobsRequest] = field(default_factory=list)
    deadlines: list[float | None] = field(default_factory=list)
    # GetJob answers from here first, one per call, to show a job changing between calls.
    get_sequence: list[job_pb2.Job] = field(default_factory=list)

    def SubmitJobs(self, request, context):  # type: ignore[no-untyped-def]
        self.deadlines.append(context.time_remaining())
        self.submits.append(request)
        if self.unavailable_submits:
            self.unavailable_submits -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "busy, try again")
        created = [job_pb2.Job(job_id=100 + i, queue=j.queue) for i, j in enumerate(request.jobs)]
        return job_service_pb2.SubmitJobsResponse(jobs=created)

    def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        self.deadlines.append(context.time_remaining())
        if self.get_sequence:
            return job_service_pb2.GetJobResponse(job=self.get_sequence.pop(0))
        if request.job_id not in self.jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        return job_service_pb2.GetJobResponse(job=self.jobs[request.job_id])

    def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        self.deadlines.append(context.time_remaining())
        self.lists.append(request)
        if "bad" in request.filter:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "unknown filter field 'bad'")
        listed = list(self.jobs.values())[: request.page_size]
        return job_service_pb2.ListJobsResponse(jobs=listed, total_size=len(self.jobs), next_page_token="next")

    def KillJobs(self, request, context):  # type: ignore[no-untyped-def]
        self.deadlines.append(context.time_remaining())
        results = []
        for job_id in request.job_ids:
            if job_id in self.jobs:
                results.append(
                    job_service_pb2.JobActionResult(
                        job_id=job_id, status=status_pb2.Status(code=0), state=job_pb2.Job.STATE_CANCELLED
                    )
                )
            else:
                results.append(
                    job_service_pb2.JobActionResult(
                        job_id=job_id, status=status_pb2.Status(code=5, message=f"job {job_id} not found")
                    )
                )
        return job_service_pb2.KillJobsResponse(results=results)

    def WatchJobs(self, request, context):  # type: ignore[no-untyped-def]
        self.watches.append(request)
        step = self.watch_script.pop(0) if self.watch_script else WatchStep([])
        for item in step.events:
            yield job_service_pb2.WatchJobsResponse(event=item)
        if step.then_abort:
            context.abort(grpc.StatusCode.UNAVAILABLE, "server going away")


@dataclass
class FakeQueues(queue_service_pb2_grpc.QueueServiceServicer):
    queues: dict[str, queue_pb2.Queue] = field(default_factory=dict)
    updates: list[queue_service_pb2.UpdateQueueRequest] = field(default_factory=list)

    def CreateQueue(self, request, context):  # type: ignore[no-untyped-def]
        if request.queue.queue_id in self.queues:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, f"queue {request.queue.queue_id} already exists")
        self.queues[request.queue.queue_id] = request.queue
        return queue_service_pb2.CreateQueueResponse(queue=request.queue)

    def GetQueue(self, request, context):  # type: ignore[no-untyped-def]
        if request.queue_id not in self.queues:
            context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.queue_id} not found")
        return queue_service_pb2.GetQueueResponse(queue=self.queues[request.queue_id])

    def ListQueues(self, request, context):  # type: ignore[no-untyped-def]
        # Two pages, to see the command follow next_page_token.
        ordered = sorted(self.queues)
        if not request.page_token:
            return queue_service_pb2.ListQueuesResponse(
                queues=[self.queues[q] for q in ordered[:1]], next_page_token="2" if len(ordered) > 1 else ""
            )
        return queue_service_pb2.ListQueuesResponse(queues=[self.queues[q] for q in ordered[1:]])

    def UpdateQueue(self, request, context):  # type: ignore[no-untyped-def]
        self.updates.append(request)
        queue = self.queues[request.queue.queue_id]
        queue.status = request.queue.status
        return queue_service_pb2.UpdateQueueResponse(queue=queue)


@dataclass
class Fakes:
    address: str
    jobs: FakeJobs
    queues: FakeQueues


@pytest.fixture
def fake() -> Iterator[Fakes]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    fakes = Fakes("", FakeJobs(), FakeQueues())
    job_service_pb2_grpc.add_JobServiceServicer_to_server(fakes.jobs, server)
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(fakes.queues, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fakes.address = f"127.0.0.1:{port}"
    try:
        yield fakes
    finally:
        server.stop(0)


def run(fake: Fakes, *argv: str) -> int:
    return main(["--server", fake.address, *argv])


# --- submit ------------------------------------------------------------------------------


def test_submit_prints_the_id_and_retries_with_the_same_request_id(fake: Fakes, capsys) -> None:
    fake.jobs.unavailable_submits = 1
    assert run(fake, "submit", "--queue", "local", "--output", "o.txt", "--", "sh", "-c", "echo > o.txt") == 0
    assert capsys.readouterr().out == "100\n"
    first, second = fake.jobs.submits
    assert first.request_id and first.request_id == second.request_id
    assert list(first.jobs[0].command) == ["sh", "-c", "echo > o.txt"]
    assert all(d is not None and 0 < d <= 31 for d in fake.jobs.deadlines)


def test_each_submission_gets_its_own_request_id(fake: Fakes, capsys) -> None:
    run(fake, "submit", "--queue", "q", "--", "true")
    run(fake, "submit", "--queue", "q", "--", "true")
    assert fake.jobs.submits[0].request_id != fake.jobs.submits[1].request_id


def test_submit_file_in_one_call(fake: Fakes, tmp_path, capsys) -> None:
    path = tmp_path / "jobs.yaml"
    path.write_text("jobs:\n  - {queue: a, command: echo 1}\n  - {command: echo 2}\n")
    assert run(fake, "submit", "-f", str(path), "--queue", "dflt") == 0
    assert capsys.readouterr().out == "100\n101\n"
    assert len(fake.jobs.submits) == 1
    assert [j.queue for j in fake.jobs.submits[0].jobs] == ["a", "dflt"]
    assert run(fake, "submit", "-f", str(path), "--queue", "dflt", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"job_ids": [100, 101]}


def test_submit_json(fake: Fakes, capsys) -> None:
    assert run(fake, "submit", "--json", "--queue", "q", "--", "true") == 0
    assert json.loads(capsys.readouterr().out) == {"job_id": 100}


# --- list / show -------------------------------------------------------------------------


def test_jobs_table_footer_and_errors(fake: Fakes, capsys) -> None:
    fake.jobs.jobs = {7: job_pb2.Job(job_id=7, state=RUNNING, queue="local", attempt=1, command=["sleep", "9"])}
    assert run(fake, "jobs", "--state", "running", "--owner", "bob") == 0
    out = capsys.readouterr().out
    assert "running" in out and "sleep 9" in out
    assert out.rstrip().endswith("showing 1 of 1; next page: same command with --page-token next")
    assert fake.jobs.lists[-1].filter == 'state = RUNNING AND owner = "bob"'
    assert fake.jobs.lists[-1].page_size == 50

    assert run(fake, "jobs", "--queue", "bad") == 1
    assert capsys.readouterr().err == "panda: INVALID_ARGUMENT: unknown filter field 'bad'\n"


def test_job_show_json_is_the_job(fake: Fakes, capsys) -> None:
    fake.jobs.jobs = {7: job_pb2.Job(job_id=7, state=RUNNING, queue="local")}
    assert run(fake, "job", "show", "7", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["state"] == "STATE_RUNNING" and data["queue"] == "local" and int(data["job_id"]) == 7
    assert run(fake, "job", "show", "8") == 1
    assert capsys.readouterr().err == "panda: NOT_FOUND: job 8 not found\n"


def test_kill_reports_each_job_and_fails_on_refusal(fake: Fakes, capsys) -> None:
    fake.jobs.jobs = {7: job_pb2.Job(job_id=7)}
    assert run(fake, "job", "kill", "7") == 0
    assert capsys.readouterr().out == "7  cancelled\n"
    assert run(fake, "job", "kill", "7", "9") == 1
    assert capsys.readouterr().out == "7  cancelled\n9  refused: NOT_FOUND: job 9 not found\n"


# --- watch -------------------------------------------------------------------------------


def running_job() -> job_pb2.Job:
    return job_pb2.Job(
        job_id=7,
        state=RUNNING,
        attempt=1,
        history=[event(3, job_pb2.Job.STATE_ACTIVATED), event(5, RUNNING, "started")],
    )


def test_watch_resumes_after_a_dropped_stream(fake: Fakes, capsys, monkeypatch) -> None:
    monkeypatch.setattr(jobs_module, "WATCH_RETRY_SECONDS", 0.0)
    fake.jobs.jobs = {7: running_job()}
    fake.jobs.watch_script = [
        WatchStep([event(6, job_pb2.Job.STATE_TRANSFERRING, "staging out")], then_abort=True),
        # The server replays from the cursor it was given; a repeat must not print twice.
        WatchStep([event(6, job_pb2.Job.STATE_TRANSFERRING, "staging out"), event(9, FINISHED, "done")]),
    ]
    assert run(fake, "job", "watch", "7") == 0
    captured = capsys.readouterr()
    states = [line.split()[1] for line in captured.out.splitlines()]  # "-": the events carry no time
    assert states == ["running", "transferring", "finished"]
    assert "resuming" in captured.err
    # The first watch starts right after the newest event GetJob showed; the second after
    # the last event received.
    assert [(w.after_cursor, list(w.job_ids)) for w in fake.jobs.watches] == [(5, [7]), (6, [7])]


def test_watch_without_history_cursors_starts_from_now_and_catches_up(fake: Fakes, capsys, monkeypatch) -> None:
    monkeypatch.setattr(jobs_module, "WATCH_RETRY_SECONDS", 0.0)
    fake.jobs.get_sequence = [
        job_pb2.Job(job_id=7, state=RUNNING, attempt=1),
        job_pb2.Job(job_id=7, state=FINISHED, attempt=1),
    ]
    # The stream ends with no event (say the server restarted): the state comes from GetJob.
    fake.jobs.watch_script = [WatchStep([])]
    assert run(fake, "job", "watch", "7") == 0
    states = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert states == ["running", "finished"]
    assert fake.jobs.watches[0].from_now and fake.jobs.watches[0].after_cursor == 0


def test_watch_follows_a_failed_attempt_into_its_retry(fake: Fakes, capsys) -> None:
    fake.jobs.get_sequence = [running_job(), job_pb2.Job(job_id=7, state=job_pb2.Job.STATE_ACTIVATED, attempt=2)]
    fake.jobs.watch_script = [
        WatchStep(
            [
                event(6, FAILED, "payload exited with code 3", attempt=1),
                event(7, job_pb2.Job.STATE_ACTIVATED, "retry: attempt 2 of 3", attempt=2),
                event(8, RUNNING, attempt=2),
                event(9, FINISHED, "done", attempt=2),
            ]
        )
    ]
    assert run(fake, "job", "watch", "7") == 0
    lines = [line.split()[1:4] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["running", "attempt", "1"],
        ["failed", "attempt", "1"],
        ["activated", "attempt", "2"],
        ["running", "attempt", "2"],
        ["finished", "attempt", "2"],
    ]


def test_watch_of_a_final_job_returns_at_once(fake: Fakes, capsys) -> None:
    fake.jobs.jobs = {7: job_pb2.Job(job_id=7, state=FAILED, attempt=3, history=[event(4, FAILED, "gave up")])}
    assert run(fake, "job", "watch", "7") == 1
    assert "failed" in capsys.readouterr().out
    assert fake.jobs.watches == []
    fake.jobs.jobs = {7: job_pb2.Job(job_id=7, state=FINISHED, attempt=1)}
    assert run(fake, "job", "watch", "7") == 0


def test_watch_exit_code_follows_the_final_state(fake: Fakes, capsys) -> None:
    fake.jobs.jobs = {7: running_job()}
    fake.jobs.watch_script = [WatchStep([event(6, FAILED, "payload failed")])]
    assert run(fake, "job", "watch", "7", "--json") == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["state"] for line in lines] == ["STATE_RUNNING", "STATE_FAILED"]


# --- queues ------------------------------------------------------------------------------


def test_queue_add_list_show_and_set_status(fake: Fakes, capsys) -> None:
    assert (
        run(
            fake,
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
            "file:///se/b",
            "--status",
            "test",
        )
        == 0
    )
    assert capsys.readouterr().out == "created queue b-queue (test)\n"
    created = fake.queues.queues["b-queue"]
    assert created.status == queue_pb2.Queue.STATUS_TEST
    assert (created.max_resources.cores, created.max_resources.memory_mb, created.max_resources.walltime_seconds) == (
        8,
        16000,
        7200,
    )
    assert run(fake, "queue", "add", "a-queue") == 0
    assert fake.queues.queues["a-queue"].status == queue_pb2.Queue.STATUS_ONLINE
    capsys.readouterr()

    assert run(fake, "queue", "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["ID", "a-queue", "b-queue"]  # both pages

    assert run(fake, "queue", "set-status", "b-queue", "OFFLINE") == 0
    assert capsys.readouterr().out == "queue b-queue is now offline\n"
    update = fake.queues.updates[-1]
    assert list(update.update_mask.paths) == ["status"]
    assert update.queue.status == queue_pb2.Queue.STATUS_OFFLINE

    assert run(fake, "queue", "set-status", "b-queue", "sleeping") == 2
    assert "unknown queue status 'sleeping'" in capsys.readouterr().err
    assert run(fake, "queue", "add", "a-queue") == 1
    assert capsys.readouterr().err == "panda: ALREADY_EXISTS: queue a-queue already exists\n"
    assert run(fake, "queue", "show", "a-queue", "--json") == 0
    assert json.loads(capsys.readouterr().out)["queue_id"] == "a-queue"
