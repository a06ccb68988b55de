"""Task commands end to end: kill, finish, retry, pause, resume, reassign, priority, each
from the states PanDA accepts it in, and FAILED_PRECONDITION (naming the state) from others."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from panda.jedi.v1 import dataset_pb2, task_pb2, task_service_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from tests.jedi_support import (
    T,
    dataset_files,
    get_task,
    history_text,
    inputs_of,
    make_queue,
    register_dataset,
    state_name,
    submit_task,
    task_jobs,
    task_params,
    wait_task,
)

pytest_plugins = ["tests.jedi_fixtures"]
J = job_pb2.Job
FS = dataset_pb2.TaskFileState
COMMANDS = ["kill", "finish", "retry", "pause", "resume", "reassign", "priority"]


def send(tasks_stub, command: str, task_id: int) -> task_pb2.Task:  # type: ignore[no-untyped-def]
    if command == "kill":
        return tasks_stub.KillTask(task_service_pb2.KillTaskRequest(task_id=task_id, reason="test"), timeout=10).task
    if command == "finish":
        return tasks_stub.FinishTask(task_service_pb2.FinishTaskRequest(task_id=task_id), timeout=10).task
    if command == "retry":
        return tasks_stub.RetryTask(task_service_pb2.RetryTaskRequest(task_id=task_id), timeout=10).task
    if command == "pause":
        return tasks_stub.PauseTask(task_service_pb2.PauseTaskRequest(task_id=task_id), timeout=10).task
    if command == "resume":
        return tasks_stub.ResumeTask(task_service_pb2.ResumeTaskRequest(task_id=task_id), timeout=10).task
    if command == "reassign":
        return tasks_stub.ReassignTask(
            task_service_pb2.ReassignTaskRequest(task_id=task_id, queues=["local"]), timeout=10).task
    if command == "priority":
        return tasks_stub.SetTaskPriority(
            task_service_pb2.SetTaskPriorityRequest(task_id=task_id, priority=5), timeout=10).task
    raise ValueError(command)


def refused(tasks_stub, command: str, task_id: int, state: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        send(tasks_stub, command, task_id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (command, caught.value.details())
    assert f"task {task_id} is {state}: {command} is accepted only when it is" in caught.value.details()


def test_kill_a_running_task_kills_its_jobs_and_it_ends_aborted(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    register_dataset(datasets_stub, "slow.in", storage_dir, 4)
    task = submit_task(tasks_stub, task_params("slow", ["slow.in"], "slow.out", "sleep 60; cat ${IN} > ${OUT}",
                                               scout_jobs=0))
    start_pilot()
    start_pilot()
    wait_task(tasks_stub, task.task_id, lambda t: t.progress.job_counts.get("running", 0) == 2, 60,
              "two running jobs")
    killed = send(tasks_stub, "kill", task.task_id)
    assert killed.state == T.STATE_ABORTING
    task = wait_task(tasks_stub, task.task_id, timeout=60)
    assert task.state == T.STATE_ABORTED, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 4 and {j.state for j in jobs} == {J.STATE_CANCELLED}
    histories = [jobs_stub.GetJob(job_service_pb2.GetJobRequest(job_id=j.job_id), timeout=10).job.history
                 for j in jobs]
    assert sum(1 for h in histories if any(e.state == J.STATE_RUNNING for e in h)) == 2
    assert task.progress.files_cancelled == 4 and task.progress.files_finished == 0
    assert "kill sent for 4 job(s)" in history_text(task)
    for command in COMMANDS:
        if command != "retry":
            refused(tasks_stub, command, task.task_id, "aborted")


def test_retry_a_finished_task_runs_only_its_failed_files(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    register_dataset(datasets_stub, "flaky.in", storage_dir, 5, content=lambda i: b"BAD\n" if i == 2 else b"ok\n")
    task = submit_task(tasks_stub, task_params(
        "flaky", ["flaky.in"], "flaky.out",
        f"if grep -q BAD ${{IN}} && ! test -e {fixed}; then exit 4; fi; cat ${{IN}} > ${{OUT}}",
        scout_jobs=0, max_attempts=1))
    start_pilot()
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_FINISHED, history_text(task)
    assert (task.progress.files_finished, task.progress.files_failed) == (4, 1)
    for command in ["kill", "finish", "pause", "resume", "reassign", "priority"]:
        refused(tasks_stub, command, task.task_id, "finished")

    fixed.touch()
    retried = send(tasks_stub, "retry", task.task_id)
    assert retried.state == T.STATE_TORETRY
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_DONE, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 6
    assert inputs_of(jobs[-1]) == ["flaky.in.0002.dat"] and jobs[-1].state == J.STATE_FINISHED
    assert len(dataset_files(datasets_stub, "flaky.out")) == 5
    (state,) = [f.task_state for f in dataset_files(datasets_stub, "flaky.in", task.task_id)
                if f.lfn == "flaky.in.0002.dat"]
    assert (state.status, state.attempts, state.max_attempts) == (FS.STATUS_FINISHED, 2, 2)
    states = [state_name(e.state) for e in task.history if e.state != e.previous_state]
    assert states[-5:] == ["finished", "toretry", "ready", "running", "done"], history_text(task)
    for command in COMMANDS:
        refused(tasks_stub, command, task.task_id, "done")


def test_every_command_refused_from_a_broken_task(tasks_stub, local_queue) -> None:  # type: ignore[no-untyped-def]
    task = submit_task(tasks_stub, task_params("nothing", ["no.such.dataset"], "nothing.out", "true"))
    task = wait_task(tasks_stub, task.task_id)
    assert task.state == T.STATE_BROKEN and task.state_reason == "input dataset no.such.dataset not found"
    for command in COMMANDS:
        refused(tasks_stub, command, task.task_id, "broken")


def test_pause_resume_priority_and_finish_of_a_waiting_task(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, tmp_path: Path
) -> None:
    # A queue nobody serves: the task's jobs wait there, activated.
    make_queue(queues_stub, "idle", tmp_path / "se" / "idle")
    register_dataset(datasets_stub, "wait.in", tmp_path / "se" / "idle", 3)
    task = submit_task(tasks_stub, task_params("waiting", ["wait.in"], "wait.out", "cat ${IN} > ${OUT}",
                                               scout_jobs=0, queues=["idle"]))
    task = wait_task(tasks_stub, task.task_id, lambda t: t.state == T.STATE_RUNNING, 30, "running")
    refused(tasks_stub, "retry", task.task_id, "running")
    refused(tasks_stub, "resume", task.task_id, "running")
    assert send(tasks_stub, "pause", task.task_id).state == T.STATE_PAUSED
    refused(tasks_stub, "pause", task.task_id, "paused")
    refused(tasks_stub, "retry", task.task_id, "paused")
    assert {j.priority for j in task_jobs(jobs_stub, task.task_id)} == {0}
    assert send(tasks_stub, "priority", task.task_id).priority == 5
    # The jobs already queued take the new priority too.
    deadline = time.monotonic() + 20
    while {j.priority for j in task_jobs(jobs_stub, task.task_id)} != {5} and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {j.priority for j in task_jobs(jobs_stub, task.task_id)} == {5}
    assert send(tasks_stub, "resume", task.task_id).state == T.STATE_RUNNING
    finishing = send(tasks_stub, "finish", task.task_id)
    assert finishing.state == T.STATE_FINISHING
    # Soft finish: the jobs that had not started are cancelled, and the task ends.
    task = wait_task(tasks_stub, task.task_id, timeout=30)
    assert task.state == T.STATE_FINISHED, history_text(task)
    assert {j.state for j in task_jobs(jobs_stub, task.task_id)} == {J.STATE_CANCELLED}
    assert task.progress.files_cancelled == 3
    text = history_text(task)
    for expected in ["running -> paused", "priority 0 -> 5", "priority 5 set on 3 queued job(s)",
                     "paused -> running", "running -> finishing",
                     "cancelled 3 job(s) not yet started", "finishing -> finished"]:
        assert expected in text, text


def test_reassign_moves_queued_jobs_and_later_ones(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, local_queue, storage_dir: Path, start_pilot, tmp_path: Path
) -> None:
    make_queue(queues_stub, "idle", tmp_path / "se" / "idle")
    register_dataset(datasets_stub, "move.in", storage_dir, 3)
    task = submit_task(tasks_stub, task_params("move", ["move.in"], "move.out", "cat ${IN} > ${OUT}",
                                               scout_jobs=0, queues=["idle"]))
    wait_task(tasks_stub, task.task_id, lambda t: t.progress.job_counts.get("activated", 0) == 3, 30,
              "three activated jobs")
    assert {j.queue for j in task_jobs(jobs_stub, task.task_id)} == {"idle"}
    start_pilot()
    moved = send(tasks_stub, "reassign", task.task_id)
    assert list(moved.queues) == ["local"]
    task = wait_task(tasks_stub, task.task_id, timeout=60)
    assert task.state == T.STATE_DONE, history_text(task)
    jobs = task_jobs(jobs_stub, task.task_id)
    assert len(jobs) == 3 and {j.queue for j in jobs} == {"local"}
    assert "reassigned 3 queued job(s): local x3" in history_text(task)


def test_pending_when_no_queue_fits_then_runs_when_one_does(  # type: ignore[no-untyped-def]
    tasks_stub, datasets_stub, jobs_stub, queues_stub, storage_dir: Path, start_pilot
) -> None:
    make_queue(queues_stub, "local", storage_dir, status=queue_pb2.Queue.STATUS_OFFLINE)
    register_dataset(datasets_stub, "later.in", storage_dir, 2)
    task = submit_task(tasks_stub, task_params("later", ["later.in"], "later.out", "cat ${IN} > ${OUT}",
                                               scout_jobs=1))
    task = wait_task(tasks_stub, task.task_id, lambda t: t.state == T.STATE_PENDING, 30, "pending")
    assert task.state_reason == "no queue fits: local: offline"
    queues_stub.UpdateQueue(queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id="local", status=queue_pb2.Queue.STATUS_ONLINE),
        update_mask=field_mask_pb2.FieldMask(paths=["status"])), timeout=10)
    start_pilot()
    task = wait_task(tasks_stub, task.task_id, timeout=60)
    assert task.state == T.STATE_DONE, history_text(task)
    assert "pending -> scouting: brokerage found a queue" in history_text(task)
    assert get_task(tasks_stub, task.task_id).progress.files_finished == 2


def test_a_task_with_too_many_queued_jobs_is_throttled(  # type: ignore[no-untyped-def]
    jedi, tasks_stub, datasets_stub, jobs_stub, local_queue, storage_dir: Path, start_pilot
) -> None:
    jedi.stop()
    jedi.env["PANDA_JEDI_MAX_QUEUED_JOBS_PER_TASK"] = "2"
    jedi.start()
    register_dataset(datasets_stub, "many.in", storage_dir, 6)
    task = submit_task(tasks_stub, task_params("throttled", ["many.in"], "throttled.out", "cat ${IN} > ${OUT}",
                                               scout_jobs=0))
    task = wait_task(tasks_stub, task.task_id, lambda t: t.state == T.STATE_THROTTLED, 30, "throttled")
    assert task.state_reason == "2 job(s) queued, at most 2 per task: the others wait until some start"
    assert len(task_jobs(jobs_stub, task.task_id)) == 2
    refused(tasks_stub, "retry", task.task_id, "throttled")
    start_pilot()
    task = wait_task(tasks_stub, task.task_id, timeout=60)
    assert task.state == T.STATE_DONE, history_text(task)
    assert len(task_jobs(jobs_stub, task.task_id)) == 6
    assert "throttled -> running: queued jobs started" in history_text(task)
