"""Helpers for JEDI's tests: the JEDI process, datasets on a POSIX storage element, queues,
waiting for tasks. The fixtures are in tests/jedi_fixtures.py (test modules load them with
`pytest_plugins = ["tests.jedi_fixtures"]`)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from panda.common.v1 import resources_pb2
from panda.jedi.v1 import (
    dataset_pb2,
    dataset_service_pb2,
    dataset_service_pb2_grpc,
    task_pb2,
    task_service_pb2,
    task_service_pb2_grpc,
)
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, queue_service_pb2
from panda_cli.launcher import JEDI, Component, Process
from tests.server_support import QueueStubs, ensure_storage_element
from tools.cluster import ServerHandle, ServiceProcess, free_port

T = task_pb2.Task
# Short intervals so a test sees the agents act within a second or two.
TEST_JEDI_ENV = {
    "PANDA_JEDI_INTERVAL_SECONDS": "0.2",
    "PANDA_JEDI_PENDING_RETRY_SECONDS": "1",
}
FINAL_TASK_STATES = {T.STATE_DONE, T.STATE_FINISHED, T.STATE_FAILED, T.STATE_ABORTED, T.STATE_BROKEN}


@dataclass
class JediHandle(ServiceProcess):
    component: ClassVar[Component] = JEDI
    address: str
    server: ServerHandle
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    process: Process | None = None
    starts: int = 0

    def log_file(self) -> Path:
        return self.log_path

    def start(self) -> None:
        self.starts += 1
        super().start()


def new_jedi(server: ServerHandle, log_dir: Path, **env: str) -> JediHandle:
    """A JEDI handle (not started) for `server`, on a free port."""
    address = f"127.0.0.1:{free_port()}"
    full_env = {**server.env, "PANDA_JEDI": address, "PANDA_JEDI_METRICS_PORT": "0", **TEST_JEDI_ENV, **env}
    return JediHandle(address, server, log_dir / "jedi.log", full_env)


# -- helpers ---------------------------------------------------------------------------------


def adler32_of(data: bytes) -> str:
    return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def make_queue(queues_stub: QueueStubs, name: str, se_dir: Path | None, *,
               status: int = queue_pb2.Queue.STATUS_ONLINE, max_memory_mb: int = 0) -> str:
    """Queue `name`, on the storage element named after `se_dir` (configured if need be)."""
    element = ensure_storage_element(queues_stub.storage, se_dir) if se_dir is not None else ""
    queues_stub.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue_pb2.Queue(
        queue_id=name, status=status, storage_element=element,
        max_resources=resources_pb2.Resources(memory_mb=max_memory_mb),
    )), timeout=10)
    return name


def register_dataset(
    datasets_stub: dataset_service_pb2_grpc.DatasetServiceStub, name: str, se_dir: Path, count: int,
    content: Callable[[int], bytes] = lambda i: f"event data of file {i}\n".encode() * 20, events: int = 10,
    prefix: str = "", scope: str = "user.admin",
) -> list[str]:
    """Write `count` files into `scope`'s directory of the storage element named after `se_dir`,
    and register them there (`scope` must be the caller's: by default the test admin's)."""
    prefix = prefix or f"{name}."
    (se_dir / scope).mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        data = content(i)
        lfn = f"{prefix}{i:04d}.dat"
        (se_dir / scope / lfn).write_bytes(data)
        files.append(dataset_pb2.DatasetFile(lfn=lfn, size_bytes=len(data), adler32=adler32_of(data), events=events,
                                             storage_elements=[se_dir.name]))
    datasets_stub.RegisterDataset(dataset_service_pb2.RegisterDatasetRequest(
        dataset=dataset_pb2.Dataset(dataset_id=name, scope=scope), files=files), timeout=30)
    return [f.lfn for f in files]


def task_params(name: str, inputs: list[str], output: str, command: str, **fields: object) -> task_pb2.TaskParams:
    return task_pb2.TaskParams(task_name=name, owner="alice", transformation=["/bin/sh", "-c", command],
                               input_datasets=inputs, output_dataset=output, **fields)  # type: ignore[arg-type]


def submit_task(tasks_stub: task_service_pb2_grpc.TaskServiceStub, params: task_pb2.TaskParams) -> task_pb2.Task:
    return tasks_stub.SubmitTask(task_service_pb2.SubmitTaskRequest(params=params), timeout=30).task


def get_task(tasks_stub: task_service_pb2_grpc.TaskServiceStub, task_id: int) -> task_pb2.Task:
    return tasks_stub.GetTask(task_service_pb2.GetTaskRequest(task_id=task_id), timeout=10).task


def state_name(state: int) -> str:
    return T.State.Name(state).removeprefix("STATE_").lower()


def history_text(task: task_pb2.Task) -> str:
    return "\n".join(f"  {state_name(e.previous_state)} -> {state_name(e.state)}: {e.reason}" for e in task.history)


def wait_task(
    tasks_stub: task_service_pb2_grpc.TaskServiceStub, task_id: int,
    predicate: Callable[[task_pb2.Task], bool] = lambda t: t.state in FINAL_TASK_STATES,
    timeout: float = 120.0, what: str = "a final state",
) -> task_pb2.Task:
    deadline = time.monotonic() + timeout
    while True:
        task = get_task(tasks_stub, task_id)
        if predicate(task):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} did not reach {what} in {timeout} s; it is "
                                 f"{state_name(task.state)} ({task.state_reason}); progress {task.progress}\n"
                                 f"history:\n{history_text(task)}")
        time.sleep(0.3)


def task_jobs(jobs_stub, task_id: int) -> list[job_pb2.Job]:  # type: ignore[no-untyped-def]
    """Every server job of a task, oldest first."""
    found: list[job_pb2.Job] = []
    token = ""
    while True:
        response = jobs_stub.ListJobs(job_service_pb2.ListJobsRequest(
            page_size=1000, filter=f"task_id = {task_id}", page_token=token), timeout=30)
        found += response.jobs
        token = response.next_page_token
        if not token:
            return sorted(found, key=lambda j: j.job_id)


def inputs_of(job: job_pb2.Job) -> list[str]:
    return [f.lfn for f in job.files if f.kind == job_pb2.JobFile.KIND_INPUT]


def dataset_files(datasets_stub, name: str, task_id: int = 0) -> list[dataset_pb2.DatasetFile]:  # type: ignore[no-untyped-def]
    found: list[dataset_pb2.DatasetFile] = []
    token = ""
    while True:
        response = datasets_stub.ListDatasetFiles(dataset_service_pb2.ListDatasetFilesRequest(
            dataset_id=name, task_id=task_id, page_size=1000, page_token=token), timeout=30)
        found += response.files
        token = response.next_page_token
        if not token:
            return found
