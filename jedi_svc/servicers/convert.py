"""Between JEDI's records and domain types and the messages of its API (panda.jedi.v1): the
only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format

from jedi_svc.domain.datasets import FileSpec
from jedi_svc.domain.progress import CANCELLED, FAILED, FINISHED, READY, RUNNING
from jedi_svc.domain.splitting import SplitRule
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.task_spec import TaskSpec
from jedi_svc.domain.templates import DEFAULT_OUTPUT_PATTERN
from jedi_svc.settings import JediSettings
from jedi_svc.store.records import DatasetFileView, DatasetRecord, TaskEvent, TaskView
from panda.common.v1 import resources_pb2
from panda.jedi.v1 import dataset_pb2, task_pb2
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.timestamps import timestamp

__all__ = [
    "dataset_to_proto", "event_to_proto", "file_specs_from_proto", "file_to_proto", "kind_from_text",
    "params_to_dict", "spec_from_params", "state_from_text", "state_to_proto", "task_to_proto",
]

DEFAULT_MAX_FAILURE_RATE = 0.5


def state_to_proto(state: str) -> task_pb2.Task.State.ValueType:
    return task_pb2.Task.State.Value(f"STATE_{state.upper()}") if state else task_pb2.Task.STATE_UNSPECIFIED


def group_value_text(field: str, value: Any) -> str:
    """A CountTasks group's value as the JSON mapping writes the field: a state by its enum
    name (`STATE_RUNNING`), a number in decimal, a string as it is."""
    if field == "state":
        return task_pb2.Task.State.Name(state_to_proto(str(value)))
    return str(value)


def count_group_to_proto(fields: Sequence[str], values: Sequence[Any], count: int) -> resources_pb2.CountGroup:
    return resources_pb2.CountGroup(
        values=[group_value_text(f, v) for f, v in zip(fields, values, strict=True)], count=count
    )


def state_from_text(text: str) -> str:
    """`RUNNING`, `running` or `STATE_RUNNING` -> `running`, for filters."""
    return TaskState(text.strip().upper().removeprefix("STATE_").lower()).value


def kind_from_text(text: str) -> str:
    name = text.strip().upper().removeprefix("KIND_").lower()
    if name not in ("input", "output"):
        raise ValueError("kind is INPUT or OUTPUT")
    return name


# -- tasks ---------------------------------------------------------------------------------


def params_to_dict(params: task_pb2.TaskParams) -> dict[str, Any]:
    return json_format.MessageToDict(params, preserving_proto_field_name=True)


def spec_from_params(params: task_pb2.TaskParams, owner: str, settings: JediSettings) -> TaskSpec:
    """The parameters with JEDI's defaults for what they leave out."""
    rule = params.split_rule
    which = rule.WhichOneof("rule")
    if which is None:
        split = SplitRule("files", 1)
    elif which == "files_per_job":
        split = SplitRule("files", rule.files_per_job)
    elif which == "events_per_job":
        split = SplitRule("events", rule.events_per_job)
    else:
        split = SplitRule("size", rule.gb_per_job)
    if split.value <= 0:
        raise InvalidArgument(f"split_rule.{which} must be positive", field=f"params.split_rule.{which}")
    resources = params.resources
    return TaskSpec(
        task_name=params.task_name.strip(),
        owner=params.owner.strip() or owner,
        vo=params.vo.strip(),
        working_group=params.working_group.strip(),
        transformation=list(params.transformation),
        input_datasets=[n.strip() for n in params.input_datasets],
        output_dataset=params.output_dataset.strip(),
        output_file_pattern=params.output_file_pattern or DEFAULT_OUTPUT_PATTERN,
        split=split,
        cores=resources.cores or settings.default_cores,
        memory_mb=resources.memory_mb or settings.default_memory_mb,
        walltime_seconds=resources.walltime_seconds or settings.default_walltime_seconds,
        disk_mb=resources.disk_mb,
        priority=params.priority,
        max_attempts=params.max_attempts or settings.default_max_attempts,
        scout_jobs=params.scout_jobs if params.HasField("scout_jobs") else settings.jedi_default_scout_jobs,
        queues=list(dict.fromkeys(q.strip() for q in params.queues)),
        excluded_queues=list(dict.fromkeys(q.strip() for q in params.excluded_queues)),
        environment=dict(params.environment),
        max_failure_rate=params.max_failure_rate or DEFAULT_MAX_FAILURE_RATE,
    )


def event_to_proto(event: TaskEvent) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(
        cursor=event.cursor, task_id=event.task_id, state=state_to_proto(event.state),
        previous_state=state_to_proto(event.previous_state), time=timestamp(event.time), reason=event.reason,
    )


def task_to_proto(view: TaskView) -> task_pb2.Task:
    task, progress = view.task, view.progress
    params = task_pb2.TaskParams()
    json_format.ParseDict(task.params, params, ignore_unknown_fields=True)
    report: dict[str, Any] = dict(task.scout_report or {})
    return task_pb2.Task(
        name=f"tasks/{task.task_id}", task_id=task.task_id, state=state_to_proto(task.state),
        state_reason=task.state_reason, params=params, priority=task.priority, queues=task.queues,
        job_resources=resources_pb2.Resources(
            cores=task.cores, memory_mb=task.memory_mb, walltime_seconds=task.walltime_seconds, disk_mb=task.disk_mb,
        ),
        progress=task_pb2.TaskProgress(
            files_total=progress.files_total, files_finished=progress.by_status[FINISHED],
            files_failed=progress.by_status[FAILED], files_running=progress.by_status[RUNNING],
            files_ready=progress.by_status[READY], files_cancelled=progress.by_status[CANCELLED],
            job_counts=view.job_counts, output_files=view.output_files, output_bytes=view.output_bytes,
        ),
        scouts=task_pb2.ScoutReport(
            jobs=report.get("jobs", 0), succeeded=report.get("succeeded", 0), failed=report.get("failed", 0),
            memory_mb=report.get("memory_mb", 0), walltime_seconds=report.get("walltime_seconds", 0),
            cpu_seconds=report.get("cpu_seconds", 0.0), applied=report.get("applied", False),
        ),
        create_time=timestamp(task.create_time), update_time=timestamp(task.update_time),
        start_time=timestamp(task.start_time), end_time=timestamp(task.end_time),
        history=[event_to_proto(e) for e in view.history],
    )


# -- datasets ------------------------------------------------------------------------------

_DATASET_KINDS = {"input": dataset_pb2.Dataset.KIND_INPUT, "output": dataset_pb2.Dataset.KIND_OUTPUT}
_FILE_STATUS = {
    READY: dataset_pb2.TaskFileState.STATUS_READY, RUNNING: dataset_pb2.TaskFileState.STATUS_RUNNING,
    FINISHED: dataset_pb2.TaskFileState.STATUS_FINISHED, FAILED: dataset_pb2.TaskFileState.STATUS_FAILED,
    CANCELLED: dataset_pb2.TaskFileState.STATUS_CANCELLED,
}


def file_specs_from_proto(messages: Iterable[dataset_pb2.DatasetFile]) -> list[FileSpec]:
    """The files of a RegisterDataset request, as given (domain.datasets.check_files checks them)."""
    return [FileSpec(m.lfn, m.size_bytes, m.adler32, m.events, list(m.storage_elements), m.scope) for m in messages]


def dataset_to_proto(record: DatasetRecord) -> dataset_pb2.Dataset:
    return dataset_pb2.Dataset(
        name=f"datasets/{record.name}", dataset_id=record.name, kind=_DATASET_KINDS[record.kind], owner=record.owner,
        task_id=record.task_id, scope=record.scope, file_count=record.file_count, total_bytes=record.total_bytes,
        total_events=record.total_events, create_time=timestamp(record.create_time),
        update_time=timestamp(record.update_time),
    )


def file_to_proto(view: DatasetFileView) -> dataset_pb2.DatasetFile:
    f = view.file
    message = dataset_pb2.DatasetFile(
        scope=f.scope, lfn=f.lfn, size_bytes=f.size_bytes, adler32=f.adler32, events=f.events,
        storage_elements=f.storage_elements, job_id=f.job_id,
    )
    state = view.task_state
    if state is not None:
        message.task_state.CopyFrom(dataset_pb2.TaskFileState(
            task_id=state.task_id, status=_FILE_STATUS[state.status], attempts=state.attempts,
            max_attempts=state.max_attempts, job_id=state.job_id, error_code=state.error_code,
            error_diag=state.error_diag, chunks=state.chunks,
        ))
    return message
