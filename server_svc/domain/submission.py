"""What a submitted job starts as: activated, first attempt, its files, the event that says so."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from server_svc.domain.job_specs import JobSpec
from server_svc.domain.jobs import JobEvent, JobFile, JobRecord
from server_svc.domain.states import JobState

__all__ = ["new_files", "new_job", "submitted_event"]


def new_job(spec: JobSpec, *, owner: str, vo: str, request_id: str, now: datetime, request_caller: str = "",
            request_digest: str = "") -> JobRecord:
    """A job goes straight to activated, at attempt 1, on no pilot; its id is given when it
    is stored. A request_id is kept with its caller and the digest of its request."""
    return JobRecord(
        job_id=0, owner=owner, vo=vo, task_id=spec.task_id, max_attempts=spec.max_attempts,
        state=JobState.ACTIVATED, attempt=1, queue=spec.queue, state_time=now, update_time=now,
        heartbeat_time=None, start_time=None, end_time=None, exit_code=0, error_code=0, error_diag="",
        log_tail="", max_rss_mb=0, cpu_seconds=0.0, pilot_id="", node="", kill_requested=False,
        priority=spec.priority, command=spec.command, environment=spec.environment, cores=spec.cores,
        memory_mb=spec.memory_mb, walltime_seconds=spec.walltime_seconds, disk_mb=spec.disk_mb,
        label=spec.label, request_id=request_id or None, request_caller=request_caller if request_id else None,
        request_digest=request_digest if request_id else None, create_time=now,
    )


def new_files(
    job_id: int, spec: JobSpec, queue_storage_element: str, urls: Mapping[str, str] | None = None
) -> list[JobFile]:
    """Inputs are ready (they exist); outputs and logs are defined until the job finishes.
    A file names its storage element, or takes its queue's; `urls` are the elements' URLs."""
    files = []
    for f in spec.files:
        element = f.storage_element or queue_storage_element
        files.append(JobFile(
            job_id=job_id, scope=f.scope, lfn=f.lfn, kind=f.kind, status="ready" if f.kind == "input" else "defined",
            size_bytes=f.size_bytes, adler32=f.adler32, storage_element=element, attempt=0,
            storage_url=(urls or {}).get(element, ""),
        ))
    return files


def submitted_event(job: JobRecord) -> JobEvent:
    return JobEvent(job.job_id, job.attempt, job.state, None, job.create_time, 0, "submitted", job.queue, job.task_id)
