"""Between domain types and protobuf messages: the only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2, job_service_pb2, queue_pb2, storage_element_pb2
from panda_runtime.contracts.error_codes import ErrorCode, Source
from panda_runtime.service.errors import ok_status
from panda_runtime.service.timestamps import timestamp
from server_svc.domain.dispatch import Acknowledgements, Assignment, JobRequest, Offer, PilotHello, UpdateAck
from server_svc.domain.job_specs import FileSpec, JobSpec
from server_svc.domain.jobs import JobEvent, JobFile, JobRecord, OutputFile
from server_svc.domain.pilot_updates import PilotUpdate
from server_svc.domain.queues import Queue
from server_svc.domain.states import JobState
from server_svc.domain.storage import StorageElement
from server_svc.domain.user_actions import ActionResult, CommandKind, PilotCommand

__all__ = [
    "acks_to_proto", "action_result_to_proto", "event_to_proto", "file_to_proto", "hello_from_proto", "job_from_proto",
    "job_to_proto", "outgoing_to_proto", "queue_status_from_proto", "queue_to_proto", "queue_values_from_proto",
    "request_from_proto", "state_from_proto", "state_from_text", "state_to_proto", "storage_element_to_proto",
    "storage_values_from_proto", "updates_from_proto",
]

_FILE_KINDS = {"input": job_pb2.JobFile.KIND_INPUT, "output": job_pb2.JobFile.KIND_OUTPUT,
               "log": job_pb2.JobFile.KIND_LOG}
_FILE_KIND_NAMES = {v: k for k, v in _FILE_KINDS.items()}
_FILE_STATUSES = {"defined": job_pb2.JobFile.STATUS_DEFINED, "ready": job_pb2.JobFile.STATUS_READY,
                  "failed": job_pb2.JobFile.STATUS_FAILED}


# Looked up once: these run for every message on the pilot streams.
_STATE_TO_PROTO = {state: job_pb2.Job.State.Value(f"STATE_{state.name}") for state in JobState}
_STATE_FROM_PROTO = {number: state for state, number in _STATE_TO_PROTO.items()}
_OK = ok_status()


def state_to_proto(state: JobState | None) -> job_pb2.Job.State.ValueType:
    """None (no job, no state) is STATE_UNSPECIFIED."""
    return job_pb2.Job.STATE_UNSPECIFIED if state is None else _STATE_TO_PROTO[state]


_SOURCE_TO_PROTO = {Source.SERVER: job_pb2.ErrorCode.SOURCE_SERVER, Source.PILOT: job_pb2.ErrorCode.SOURCE_PILOT}


def error_code_to_proto(error: ErrorCode) -> job_pb2.ErrorCode:
    return job_pb2.ErrorCode(code=error.code, name=error.name, meaning=error.meaning, used_when=error.used_when,
                             source=_SOURCE_TO_PROTO[error.source])


def group_value_text(field: str, value: Any) -> str:
    """A CountJobs group's value as the JSON mapping writes the field: a state by its enum
    name (`STATE_FINISHED`), a number in decimal, a string as it is."""
    if field == "state":
        return job_pb2.Job.State.Name(state_to_proto(JobState(value)))
    return str(value)


def count_group_to_proto(fields: Sequence[str], values: Sequence[Any], count: int) -> resources_pb2.CountGroup:
    return resources_pb2.CountGroup(
        values=[group_value_text(f, v) for f, v in zip(fields, values, strict=True)], count=count
    )


def state_from_proto(value: int) -> JobState:
    try:
        return _STATE_FROM_PROTO[value]  # type: ignore[index]  # any int may come off the wire
    except KeyError:
        raise ValueError(f"not a job state: {value}") from None


def state_from_text(text: str) -> str:
    """`RUNNING`, `running` or `STATE_RUNNING` -> `running`, for filters."""
    name = text.strip().upper().removeprefix("STATE_")
    return JobState(name.lower()).value


def event_to_proto(event: JobEvent) -> job_pb2.JobEvent:
    return job_pb2.JobEvent(
        cursor=event.cursor, job_id=event.job_id, attempt=event.attempt,
        state=state_to_proto(event.state), previous_state=state_to_proto(event.previous_state),
        time=timestamp(event.time), error_code=event.error_code, reason=event.reason,
        queue=event.queue, task_id=event.task_id,
    )


def file_to_proto(file: JobFile) -> job_pb2.JobFile:
    return job_pb2.JobFile(
        scope=file.scope, lfn=file.lfn, kind=_FILE_KINDS[file.kind], status=_FILE_STATUSES[file.status],
        size_bytes=file.size_bytes, adler32=file.adler32, storage_element=file.storage_element,
        attempt=file.attempt, storage_url=file.storage_url,
    )


def job_to_proto(job: JobRecord) -> job_pb2.Job:
    return job_pb2.Job(
        name=f"jobs/{job.job_id}", job_id=job.job_id, state=state_to_proto(job.state),
        queue=job.queue, owner=job.owner, vo=job.vo, task_id=job.task_id, priority=job.priority,
        attempt=job.attempt, max_attempts=job.max_attempts, command=job.command,
        environment=job.environment,
        resources=resources_pb2.Resources(
            cores=job.cores, memory_mb=job.memory_mb, walltime_seconds=job.walltime_seconds, disk_mb=job.disk_mb,
        ),
        files=[file_to_proto(f) for f in job.files],
        error_code=job.error_code, error_diag=job.error_diag, exit_code=job.exit_code,
        log_tail=job.log_tail, pilot_id=job.pilot_id, node=job.node, max_rss_mb=job.max_rss_mb,
        cpu_seconds=job.cpu_seconds, create_time=timestamp(job.create_time),
        update_time=timestamp(job.update_time), start_time=timestamp(job.start_time),
        end_time=timestamp(job.end_time), heartbeat_time=timestamp(job.heartbeat_time),
        label=job.label, history=[event_to_proto(e) for e in job.history], worker_id=job.worker_id or "",
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
                adler32=f.adler32, storage_element=f.storage_element, scope=f.scope,
            )
            for f in job.files
        ],
    )


def action_result_to_proto(result: ActionResult) -> job_service_pb2.JobActionResult:
    return job_service_pb2.JobActionResult(
        job_id=result.job_id,
        status=result.error.to_status() if result.error else _OK,
        state=state_to_proto(result.state),
    )


_QUEUE_STATUS = {
    "online": queue_pb2.Queue.STATUS_ONLINE, "offline": queue_pb2.Queue.STATUS_OFFLINE,
    "test": queue_pb2.Queue.STATUS_TEST, "brokeroff": queue_pb2.Queue.STATUS_BROKEROFF,
}
_QUEUE_STATUS_NAMES = {v: k for k, v in _QUEUE_STATUS.items()}


def queue_status_from_proto(value: int) -> str:
    return _QUEUE_STATUS_NAMES.get(value, "")  # type: ignore[call-overload]  # any int may come off the wire


def queue_to_proto(queue: Queue, connected_pilots: int = 0) -> queue_pb2.Queue:
    return queue_pb2.Queue(
        name=f"queues/{queue.queue_id}", queue_id=queue.queue_id, status=_QUEUE_STATUS[queue.status],
        max_resources=resources_pb2.Resources(
            cores=queue.max_cores, memory_mb=queue.max_memory_mb,
            walltime_seconds=queue.max_walltime_seconds, disk_mb=queue.max_disk_mb,
        ),
        storage_element=queue.storage_element, description=queue.description,
        create_time=timestamp(queue.create_time), update_time=timestamp(queue.update_time),
        job_counts=queue.job_counts, connected_pilots=connected_pilots,
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


def storage_element_to_proto(element: StorageElement) -> storage_element_pb2.StorageElement:
    return storage_element_pb2.StorageElement(
        name=f"storageElements/{element.storage_element_id}", storage_element_id=element.storage_element_id,
        url=element.url, queues=element.queues, vos=element.vos, description=element.description,
        create_time=timestamp(element.create_time), update_time=timestamp(element.update_time),
    )


def storage_values_from_proto(element: storage_element_pb2.StorageElement) -> dict[str, Any]:
    """Every writable column of a storage element, from the message (lists without blanks or
    repeats)."""
    return {
        "url": element.url.strip(),
        "queues": list(dict.fromkeys(q.strip() for q in element.queues if q.strip())),
        "vos": list(dict.fromkeys(v.strip() for v in element.vos if v.strip())),
        "description": element.description,
    }


# -- the pilot stream ----------------------------------------------------------------------

_COMMAND_KINDS = {CommandKind.KILL: dispatch_pb2.Command.KIND_KILL,
                  CommandKind.SOFT_KILL: dispatch_pb2.Command.KIND_SOFT_KILL,
                  CommandKind.DEBUG: dispatch_pb2.Command.KIND_DEBUG}


def _offer_from_proto(resources: resources_pb2.Resources) -> Offer:
    return Offer(resources.cores, resources.memory_mb, resources.walltime_seconds)


def hello_from_proto(hello: dispatch_pb2.Hello, pilot_id: str, subject: str, queues: frozenset[str]) -> PilotHello:
    """The Hello of a pilot admitted as `pilot_id`, whose token names `subject` and `queues`."""
    return PilotHello(
        pilot_id=pilot_id, queue=hello.queue, node=hello.node, offer=_offer_from_proto(hello.resources),
        held_jobs=frozenset(held.job_id for held in hello.held_jobs), subject=subject, queues=queues,
        worker_id=hello.worker_id,
    )


def request_from_proto(request: dispatch_pb2.RequestJobs) -> JobRequest:
    return JobRequest(request.count, _offer_from_proto(request.resources) if request.HasField("resources") else None)


def updates_from_proto(
    updates: Sequence[dispatch_pb2.JobUpdate], pilot_id: str, queues: frozenset[str]
) -> list[PilotUpdate]:
    """Updates the stream's checks passed (`dispatch_checks.check_updates`), from the pilot
    `pilot_id` whose token names `queues`."""
    return [_update_from_proto(u, pilot_id, queues) for u in updates]


def _update_from_proto(update: dispatch_pb2.JobUpdate, pilot_id: str, queues: frozenset[str]) -> PilotUpdate:
    return PilotUpdate(
        job_id=update.job_id, attempt=update.attempt, state=state_from_proto(update.state), pilot_id=pilot_id,
        queues=queues,
        exit_code=update.exit_code, error_code=update.error_code, error_diag=update.error_diag,
        log_tail=update.log_tail, max_rss_mb=update.max_rss_mb, cpu_seconds=update.cpu_seconds,
        output_files=[
            OutputFile(update.job_id, update.attempt, f.lfn, f.size_bytes, f.adler32)
            for f in update.output_files
        ],
    )


def _ack_to_proto(ack: UpdateAck) -> dispatch_pb2.UpdateAck:
    return dispatch_pb2.UpdateAck(
        seq=ack.seq, job_id=ack.job_id, attempt=ack.attempt,
        status=ack.error.to_status() if ack.error else _OK, state=state_to_proto(ack.state),
    )


def acks_to_proto(acks: Acknowledgements) -> dispatch_pb2.ConnectResponse:
    """Acknowledgements sent alone, without a job."""
    return dispatch_pb2.ConnectResponse(update_acks=dispatch_pb2.UpdateAcks(acks=[_ack_to_proto(a) for a in acks.acks]))


def outgoing_to_proto(message: Assignment | Acknowledgements | PilotCommand) -> dispatch_pb2.ConnectResponse:
    """A message of the dispatch hub for a pilot."""
    if isinstance(message, Assignment):
        return dispatch_pb2.ConnectResponse(
            job_assignments=dispatch_pb2.JobAssignments(
                jobs=[job_to_proto(job) for job in message.jobs], acks=[_ack_to_proto(a) for a in message.acks]
            )
        )
    if isinstance(message, Acknowledgements):
        return acks_to_proto(message)
    return dispatch_pb2.ConnectResponse(
        command=dispatch_pb2.Command(
            job_id=message.job_id, attempt=message.attempt, kind=_COMMAND_KINDS[message.kind], reason=message.reason,
        )
    )
