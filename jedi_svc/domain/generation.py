"""Jobs from a task's chunks: each job's queue (brokerage), priority (fair share), serial,
submission batch and spec (the task's templates). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from jedi_svc.domain import brokerage, fairshare, templates
from jedi_svc.domain.chunks import TaskChunk
from jedi_svc.domain.datasets import DatasetFile
from jedi_svc.domain.jobs import JobFileSpec, JobSpec
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import KEEP, ScoutReport, Task, TaskChange

__all__ = ["Generation", "JobTemplates", "PlannedJob", "generate", "job_spec"]


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
) -> Generation:
    """A job for each group of chunks (`files`: their files by id), numbered on from the
    task's next serial, batch_size jobs per submission batch; `queues` count what they are
    given. The task becomes SCOUTING (scouts) or RUNNING."""
    chosen = brokerage.assign(queues, [
        [(files[c.file_id].size_bytes, files[c.file_id].storage_elements) for c in group] for group in groups])
    priorities = fairshare.job_priorities(task.priority, owner_jobs_in_flight, len(groups), jobs_per_point)
    shared = JobTemplates.of(task, scouting)
    serial, batch = task.next_serial, task.next_batch
    planned: list[PlannedJob] = []
    for index, (group, queue, priority) in enumerate(zip(groups, chosen, priorities, strict=True)):
        if index and index % batch_size == 0:
            batch += 1
        attempt = max(c.attempts for c in group) + 1
        spec = job_spec(task, group, files, queue, priority, serial, attempt, shared)
        planned.append(PlannedJob(serial, batch, scouting, queue.queue_id, priority, attempt, group, spec))
        serial += 1
    return Generation(planned, _generated(task, planned, chosen, priorities, scouting, serial, batch, at))


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


def job_spec(task: Task, group: list[TaskChunk], files: Mapping[int, DatasetFile], queue: brokerage.QueueInfo,
             priority: int, serial: int, attempt: int, shared: JobTemplates) -> JobSpec:
    """One job's spec: its inputs (each read from the queue's storage element when it holds a
    replica), its output named by the task's pattern, its command from the transformation."""
    output = templates.output_name(shared.output_pattern, task_id=task.task_id, dataset=shared.output_dataset,
                                   serial=serial, attempt=attempt)
    inputs: list[str] = []
    input_files: list[JobFileSpec] = []
    for chunk in group:
        f = files[chunk.file_id]
        if f.lfn in inputs:
            continue
        inputs.append(f.lfn)
        replicas = list(f.storage_elements or [])
        se = queue.storage_element if queue.storage_element in replicas else (replicas[0] if replicas else "")
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
