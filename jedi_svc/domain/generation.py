"""Jobs from a task's chunks: each job's queue (brokerage), priority (fair share), serial,
submission batch and spec (the task's templates). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from jedi_svc.domain import brokerage, fairshare, planning, templates
from jedi_svc.domain.chunks import TaskChunk
from jedi_svc.domain.datasets import DatasetFile
from jedi_svc.domain.jobs import JobFileSpec, JobSpec
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import KEEP, ScoutReport, Task, TaskChange, underlying_state
from panda_runtime.contracts import Violation
from panda_runtime.contracts import server as server_contract

__all__ = ["Generation", "JobTemplates", "PlannedJob", "contract_fields", "generate", "job_spec"]


@dataclass(slots=True)
class PlannedJob:
    serial: int
    batch: int
    scout: bool
    queue: str
    priority: int
    attempt: int
    chunks: list[TaskChunk]
    spec: JobSpec

    @property
    def output_lfn(self) -> str:
        return self.spec["files"][-1]["lfn"]


@dataclass(frozen=True, slots=True)
class Generation:
    jobs: list[PlannedJob]
    change: TaskChange

    @property
    def batches(self) -> list[int]:
        return sorted({job.batch for job in self.jobs})

    @property
    def abandons_ready_chunks(self) -> bool:
        """Whether the task's ready chunks will never run: it broke (a job the server would refuse)."""
        return not self.jobs and self.change.state == TaskState.BROKEN


@dataclass(frozen=True, slots=True)
class JobTemplates:
    """What every job of the task takes from its parameters."""

    output_pattern: str
    output_dataset: str
    transformation: list[str]
    environment: dict[str, str]
    label: str

    @classmethod
    def of(cls, task: Task, scouting: bool) -> JobTemplates:
        params = task.params
        return cls(
            output_pattern=params.get("output_file_pattern") or templates.DEFAULT_OUTPUT_PATTERN,
            output_dataset=params.get("output_dataset", ""),
            transformation=list(params.get("transformation", [])),
            environment=dict(params.get("environment", {})),
            label=task.task_name[:240] + (" (scout)" if scouting else ""),
        )


def generate(
    task: Task, groups: list[list[TaskChunk]], files: Mapping[int, DatasetFile], queues: list[brokerage.QueueInfo],
    owner_jobs_in_flight: int, *, scouting: bool, batch_size: int, jobs_per_point: int, at: datetime,
    pending_retry_seconds: float = 0.0,
) -> Generation:
    """A job for each group of chunks (`files`: their files by id), numbered on from the
    task's next serial, batch_size jobs per submission batch; `queues` count what they are
    given. The task becomes SCOUTING (scouts) or RUNNING; or BROKEN, with no jobs, when a job
    would break the server's contract (a file name it refuses, say): the server would refuse
    its batch, so it is never made. A group whose inputs no queue may read (brokerage.assign)
    waits; when every group does, the task goes PENDING for pending_retry_seconds."""
    chosen = brokerage.assign(queues, [
        [(files[c.file_id].size_bytes, files[c.file_id].storage_elements) for c in group] for group in groups],
        task.vo)
    placed = [(group, queue) for group, queue in zip(groups, chosen, strict=True) if queue is not None]
    if not placed:
        # Jobs the server would refuse (an input no candidate queue may read): none is made,
        # and brokerage tries again later, as when no queue fits.
        first = [files[c.file_id] for c in groups[0]]
        reason = brokerage.unreadable(queues, [(f"{f.scope}:{f.lfn}", f.storage_elements) for f in first], task.vo)
        return Generation([], planning.pending_change(task, reason, underlying_state(task),
                                                      at + timedelta(seconds=pending_retry_seconds)))
    priorities = fairshare.job_priorities(task.priority, owner_jobs_in_flight, len(placed), jobs_per_point)
    shared = JobTemplates.of(task, scouting)
    serial, batch = task.next_serial, task.next_batch
    planned: list[PlannedJob] = []
    for index, ((group, queue), priority) in enumerate(zip(placed, priorities, strict=True)):
        if index and index % batch_size == 0:
            batch += 1
        attempt = max(c.attempts for c in group) + 1
        spec = job_spec(task, group, files, queue, priority, serial, attempt, shared)
        try:
            server_contract.check_job(contract_fields(spec), "job")
        except Violation as violation:
            return Generation([], TaskChange(TaskState.BROKEN, f"job {serial} would be refused by the server: "
                                                               f"{violation}"))
        planned.append(PlannedJob(serial, batch, scouting, queue.queue_id, priority, attempt, group, spec))
        serial += 1
    chosen_queues = [queue for _, queue in placed]
    return Generation(planned, _generated(task, planned, chosen_queues, priorities, scouting, serial, batch, at))


def _generated(task: Task, planned: list[PlannedJob], chosen: list[brokerage.QueueInfo], priorities: list[int],
               scouting: bool, serial: int, batch: int, at: datetime) -> TaskChange:
    report: ScoutReport | None = None
    if scouting:
        report = ScoutReport(**task.scout_report)
        report["jobs"] = report.get("jobs", 0) + len(planned)
    per_queue: dict[str, int] = {}
    for queue in chosen:
        per_queue[queue.queue_id] = per_queue.get(queue.queue_id, 0) + 1
    placed = ", ".join(f"{q} x{n}" for q, n in sorted(per_queue.items()))
    what = "scout job(s)" if scouting else "job(s)"
    span = f"..{priorities[-1]}" if priorities[-1] != priorities[0] else ""
    reason = f"generated {len(planned)} {what} (priority {priorities[0]}{span}): {placed}"
    if task.state == TaskState.PENDING:
        reason = "brokerage found a queue; " + reason
    elif task.state == TaskState.THROTTLED:
        reason = "queued jobs started; " + reason
    return TaskChange(
        TaskState.SCOUTING if scouting else TaskState.RUNNING, reason, next_serial=serial, next_batch=batch + 1,
        wait_until=None, resume_state="", start_time=at if task.start_time is None else KEEP,
        scout_report=report if report is not None else KEEP)


def contract_fields(spec: JobSpec) -> server_contract.JobFields:
    """A job as the server's contract reads it."""
    resources = spec["resources"]
    return server_contract.JobFields(
        queue=spec["queue"], command=spec["command"], environment=spec["environment"], label=spec["label"],
        task_id=spec["task_id"], priority=spec["priority"], max_attempts=spec["max_attempts"],
        cores=resources["cores"], memory_mb=resources["memory_mb"], walltime_seconds=resources["walltime_seconds"],
        disk_mb=resources["disk_mb"],
        files=[server_contract.JobFileFields(f["lfn"], f["kind"], f.get("size_bytes", 0), f.get("adler32", ""),
                                             f.get("storage_element", "")) for f in spec["files"]],
    )


def job_spec(task: Task, group: list[TaskChunk], files: Mapping[int, DatasetFile], queue: brokerage.QueueInfo,
             priority: int, serial: int, attempt: int, shared: JobTemplates) -> JobSpec:
    """One job's spec: its inputs (each read from the queue's storage element when it holds a
    replica, else from one the queue may read), its output named by the task's pattern, its
    command from the transformation."""
    output = templates.output_name(shared.output_pattern, task_id=task.task_id, dataset=shared.output_dataset,
                                   serial=serial, attempt=attempt)
    inputs: list[str] = []
    input_files: list[JobFileSpec] = []
    for chunk in group:
        f = files[chunk.file_id]
        if f.lfn in inputs:
            continue
        inputs.append(f.lfn)
        se = queue.usable(list(f.storage_elements or []), task.vo)[0]
        input_files.append(JobFileSpec(lfn=f.lfn, kind="input", size_bytes=f.size_bytes, adler32=f.adler32,
                                       storage_element=se, scope=f.scope))
    if task.split_kind == "events":
        skip = group[0].first_event
        count = sum(c.n_events or files[c.file_id].events for c in group)
    else:
        skip = 0
        known = [files[c.file_id].events for c in group]
        count = sum(known) if all(known) else -1
    values = templates.JobValues(inputs=inputs, output=output, task_id=task.task_id, serial=serial, attempt=attempt,
                                 skip_events=skip, max_events=count)
    env = {**shared.environment, "PANDA_TASK_ID": str(task.task_id), "PANDA_JOB_SERIAL": str(serial)}
    return JobSpec(
        queue=queue.queue_id, priority=priority, label=shared.label, task_id=task.task_id, max_attempts=1,
        command=templates.expand_transformation(shared.transformation, values), environment=env,
        resources={"cores": task.cores, "memory_mb": task.memory_mb, "walltime_seconds": task.walltime_seconds,
                   "disk_mb": task.disk_mb},
        files=[*input_files, JobFileSpec(lfn=output, kind="output")],
    )
