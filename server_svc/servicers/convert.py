"""Between stored rows and protobuf messages: the only place that knows both shapes."""

from __future__ import annotations

from typing import Any

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2, queue_pb2
from panda_runtime.service.timestamps import timestamp
from server_svc.domain.job_specs import FileSpec, JobSpec
from server_svc.domain.states import JobState
from server_svc.store.queue_store import QueueRecord

_FILE_KINDS = {"input": job_pb2.JobFile.KIND_INPUT, "output": job_pb2.JobFile.KIND_OUTPUT,
               "log": job_pb2.JobFile.KIND_LOG}
_FILE_KIND_NAMES = {v: k for k, v in _FILE_KINDS.items()}
_FILE_STATUSES = {"defined": job_pb2.JobFile.STATUS_DEFINED, "ready": job_pb2.JobFile.STATUS_READY,
                  "failed": job_pb2.JobFile.STATUS_FAILED}


# Looked up once: these run for every message on the pilot streams.
_STATE_TO_PROTO = {state.value: job_pb2.Job.State.Value(f"STATE_{state.name}") for state in JobState}
_STATE_FROM_PROTO = {number: JobState(text) for text, number in _STATE_TO_PROTO.items()}


def state_to_proto(state: str) -> int:
    return _STATE_TO_PROTO.get(state, job_pb2.Job.STATE_UNSPECIFIED)


def state_from_proto(value: int) -> JobState:
    try:
        return _STATE_FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"not a job state: {value}") from None


def state_from_text(text: str) -> str:
    """`RUNNING`, `running` or `STATE_RUNNING` -> `running`, for filters."""
    name = text.strip().upper().removeprefix("STATE_")
    return JobState(name.lower()).value


def event_to_proto(event: dict[str, Any]) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        cursor=event["cursor"], job_id=event["job_id"], attempt=event["attempt"],
        state=state_to_proto(event["state"]), previous_state=state_to_proto(event["previous_state"]),
        time=timestamp(event["time"]), error_code=event["error_code"], reason=event["reason"],
        queue=event["queue"], task_id=event["task_id"],
    )


def file_to_proto(row: dict[str, Any]) -> job_pb2.JobFile:
    return job_pb2.JobFile(
        lfn=row["lfn"], kind=_FILE_KINDS[row["kind"]], status=_FILE_STATUSES[row["status"]],
        size_bytes=row["size_bytes"], adler32=row["adler32"], storage_element=row["storage_element"],
        attempt=row["attempt"],
    )


def job_to_proto(row: dict[str, Any]) -> job_pb2.Job:
    return job_pb2.Job(
        name=f"jobs/{row['job_id']}", job_id=row["job_id"], state=state_to_proto(row["state"]),
        queue=row["queue"], owner=row["owner"], vo=row.get("vo", ""), task_id=row["task_id"], priority=row["priority"],
        attempt=row["attempt"], max_attempts=row["max_attempts"], command=row["command"],
        environment=row["environment"],
        resources=resources_pb2.Resources(
            cores=row["cores"], memory_mb=row["memory_mb"], walltime_seconds=row["walltime_seconds"],
            disk_mb=row["disk_mb"],
        ),
        files=[file_to_proto(f) for f in row.get("files", [])],
        error_code=row["error_code"], error_diag=row["error_diag"], exit_code=row["exit_code"],
        log_tail=row["log_tail"], pilot_id=row["pilot_id"], node=row["node"], max_rss_mb=row["max_rss_mb"],
        cpu_seconds=row["cpu_seconds"], create_time=timestamp(row["create_time"]),
        update_time=timestamp(row["update_time"]), start_time=timestamp(row["start_time"]),
        end_time=timestamp(row["end_time"]), heartbeat_time=timestamp(row["heartbeat_time"]),
        label=row["label"], history=[event_to_proto(e) for e in row.get("history", [])],
    )


def job_from_proto(job: job_pb2.Job, defaults: Any) -> JobSpec:
    """A submitted Job message as a spec, with the server's defaults for what it leaves out."""
    resources = job.resources
    return JobSpec(
        queue=job.queue,
        command=list(job.command),
        environment=dict(job.environment),
        cores=resources.cores or defaults.default_cores,
        memory_mb=resources.memory_mb or defaults.default_memory_mb,
        walltime_seconds=resources.walltime_seconds or defaults.default_walltime_seconds,
        disk_mb=resources.disk_mb,
        priority=job.priority,
        max_attempts=job.max_attempts or defaults.default_max_attempts,
        task_id=job.task_id,
        label=job.label,
        files=[
            FileSpec(
                lfn=f.lfn, kind=_FILE_KIND_NAMES.get(f.kind, "unspecified"), size_bytes=f.size_bytes,
                adler32=f.adler32, storage_element=f.storage_element,
            )
            for f in job.files
        ],
    )


_QUEUE_STATUS = {
    "online": queue_pb2.Queue.STATUS_ONLINE, "offline": queue_pb2.Queue.STATUS_OFFLINE,
    "test": queue_pb2.Queue.STATUS_TEST, "brokeroff": queue_pb2.Queue.STATUS_BROKEROFF,
}
_QUEUE_STATUS_NAMES = {v: k for k, v in _QUEUE_STATUS.items()}


def queue_status_from_proto(value: int) -> str:
    return _QUEUE_STATUS_NAMES.get(value, "")


def queue_to_proto(record: QueueRecord, connected_pilots: int = 0) -> queue_pb2.Queue:
    return queue_pb2.Queue(
        name=f"queues/{record.queue_id}", queue_id=record.queue_id, status=_QUEUE_STATUS[record.status],
        max_resources=resources_pb2.Resources(
            cores=record.max_cores, memory_mb=record.max_memory_mb,
            walltime_seconds=record.max_walltime_seconds, disk_mb=record.max_disk_mb,
        ),
        storage_element=record.storage_element, description=record.description,
        create_time=timestamp(record.create_time), update_time=timestamp(record.update_time),
        job_counts=record.job_counts, connected_pilots=connected_pilots,
    )


def queue_values_from_proto(queue: queue_pb2.Queue) -> dict[str, Any]:
    """Every writable column of a queue, from the message."""
    return {
        "status": queue_status_from_proto(queue.status),
        "max_cores": queue.max_resources.cores,
        "max_memory_mb": queue.max_resources.memory_mb,
        "max_walltime_seconds": queue.max_resources.walltime_seconds,
        "max_disk_mb": queue.max_resources.disk_mb,
        "storage_element": queue.storage_element,
        "description": queue.description,
    }
