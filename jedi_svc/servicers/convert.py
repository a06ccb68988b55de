"""Between stored rows and protobuf messages: the only place that knows both shapes."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from jedi_svc.domain.progress import CANCELLED, FAILED, FINISHED, READY, RUNNING
from jedi_svc.domain.splitting import SplitRule
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.task_spec import TaskSpec
from jedi_svc.domain.templates import DEFAULT_OUTPUT_PATTERN
from jedi_svc.settings import JediSettings
from panda.common.v1 import resources_pb2
from panda.jedi.v1 import dataset_pb2, task_pb2
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.timestamps import timestamp

DEFAULT_MAX_FAILURE_RATE = 0.5


def state_to_proto(state: str) -> int:
    return task_pb2.Task.State.Value(f"STATE_{state.upper()}") if state else task_pb2.Task.STATE_UNSPECIFIED


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


def event_to_proto(event: dict[str, Any]) -> task_pb2.TaskEvent:
    return task_pb2.TaskEvent(
        cursor=event["cursor"], task_id=event["task_id"], state=state_to_proto(event["state"]),
        previous_state=state_to_proto(event["previous_state"]), time=timestamp(event["time"]),
        reason=event["reason"],
    )


def task_to_proto(row: dict[str, Any]) -> task_pb2.Task:
    params = task_pb2.TaskParams()
    json_format.ParseDict(row["params"], params, ignore_unknown_fields=True)
    progress = row["progress"]
    report = row["scout_report"] or {}
    return task_pb2.Task(
        name=f"tasks/{row['task_id']}", task_id=row["task_id"], state=state_to_proto(row["state"]),
        state_reason=row["state_reason"], params=params, priority=row["priority"], queues=row["queues"],
        job_resources=resources_pb2.Resources(
            cores=row["cores"], memory_mb=row["memory_mb"], walltime_seconds=row["walltime_seconds"],
            disk_mb=row["disk_mb"],
        ),
        progress=task_pb2.TaskProgress(
            files_total=progress.files_total, files_finished=progress.by_status[FINISHED],
            files_failed=progress.by_status[FAILED], files_running=progress.by_status[RUNNING],
            files_ready=progress.by_status[READY], files_cancelled=progress.by_status[CANCELLED],
            job_counts=row["job_counts"], output_files=row["output_files"], output_bytes=row["output_bytes"],
        ),
        scouts=task_pb2.ScoutReport(
            jobs=report.get("jobs", 0), succeeded=report.get("succeeded", 0), failed=report.get("failed", 0),
            memory_mb=report.get("memory_mb", 0), walltime_seconds=report.get("walltime_seconds", 0),
            cpu_seconds=report.get("cpu_seconds", 0.0), applied=report.get("applied", False),
        ),
        create_time=timestamp(row["create_time"]), update_time=timestamp(row["update_time"]),
        start_time=timestamp(row["start_time"]), end_time=timestamp(row["end_time"]),
        history=[event_to_proto(e) for e in row.get("history", [])],
    )


# -- datasets ------------------------------------------------------------------------------

_DATASET_KINDS = {"input": dataset_pb2.Dataset.KIND_INPUT, "output": dataset_pb2.Dataset.KIND_OUTPUT}
_FILE_STATUS = {
    READY: dataset_pb2.TaskFileState.STATUS_READY, RUNNING: dataset_pb2.TaskFileState.STATUS_RUNNING,
    FINISHED: dataset_pb2.TaskFileState.STATUS_FINISHED, FAILED: dataset_pb2.TaskFileState.STATUS_FAILED,
    CANCELLED: dataset_pb2.TaskFileState.STATUS_CANCELLED,
}


def dataset_to_proto(row: dict[str, Any]) -> dataset_pb2.Dataset:
    return dataset_pb2.Dataset(
        name=f"datasets/{row['name']}", dataset_id=row["name"], kind=_DATASET_KINDS[row["kind"]], owner=row["owner"],
        task_id=row["task_id"], file_count=row["file_count"], total_bytes=row["total_bytes"],
        total_events=row["total_events"], create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]),
    )


def file_to_proto(row: dict[str, Any]) -> dataset_pb2.DatasetFile:
    message = dataset_pb2.DatasetFile(
        lfn=row["lfn"], size_bytes=row["size_bytes"], adler32=row["adler32"], events=row["events"],
        storage_elements=row["storage_elements"], job_id=row["job_id"],
    )
    state = row.get("task_state")
    if state:
        message.task_state.CopyFrom(dataset_pb2.TaskFileState(
            task_id=state["task_id"], status=_FILE_STATUS[state["status"]], attempts=state["attempts"],
            max_attempts=state["max_attempts"], job_id=state["job_id"], error_code=state["error_code"],
            error_diag=state["error_diag"], chunks=state["chunks"],
        ))
    return message
