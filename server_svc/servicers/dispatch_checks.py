"""What a pilot's messages must be, checked as they come off the stream: a field that breaks a
rule (a pilot id longer than its column, a NUL byte, a negative id, a state out of range) closes
that stream with INVALID_ARGUMENT naming the field, before anything of it reaches a dispatch
round, which every pilot shares."""

from __future__ import annotations

import math
import re

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import job_pb2
from panda_runtime.contracts import Violation
from panda_runtime.contracts.harvester import MAX_WORKER_ID_LENGTH
from panda_runtime.contracts.server import ADLER32, MAX_LFN_LENGTH, check_storage_element
from panda_runtime.service.errors import InvalidArgument
from server_svc.domain.job_specs import validate_queue_id
from server_svc.domain.pilots import MAX_NODE, MAX_PILOT_ID, MAX_RESUME_SECRET

__all__ = ["MAX_HELD_JOBS", "MAX_JOBS_PER_REQUEST", "check_goodbye", "check_hello", "check_request", "check_updates"]

# More than any pilot runs at once; a bigger count would only make a round build huge claims.
MAX_JOBS_PER_REQUEST = 10_000
MAX_HELD_JOBS = 10_000
_MAX_SHORT_TEXT = 256  # version
_MAX_REASON = 1024
# Control characters: none belongs in an id or a name, and PostgreSQL refuses NUL in any text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STATES = frozenset(job_pb2.Job.State.values()) - {job_pb2.Job.STATE_UNSPECIFIED}


def _name(value: str, field: str, limit: int, *, required: bool = False) -> None:
    """An id or a name: at most `limit` characters, no control character."""
    if required and not value:
        raise InvalidArgument(f"{field} is required", field=field)
    if len(value) > limit:
        raise InvalidArgument(f"{field} is longer than {limit} characters ({len(value)})", field=field)
    if _CONTROL.search(value):
        raise InvalidArgument(f"{field} has a control character (NUL, newline...)", field=field)


def _text(value: str, field: str) -> None:
    """Free text (a diagnosis, a log tail): any length (the domain keeps what it keeps), no NUL."""
    if "\x00" in value:
        raise InvalidArgument(f"{field} has a NUL character", field=field)


def _at_least(value: int | float, minimum: int, field: str) -> None:
    if value < minimum:
        raise InvalidArgument(f"{field} must be at least {minimum}, not {value}", field=field)


def _resources(resources: resources_pb2.Resources, where: str) -> None:
    for name in ("cores", "memory_mb", "walltime_seconds", "disk_mb"):
        _at_least(getattr(resources, name), 0, f"{where}.{name}")


def check_hello(hello: dispatch_pb2.Hello) -> None:
    _name(hello.pilot_id, "hello.pilot_id", MAX_PILOT_ID)
    validate_queue_id(hello.queue, "hello.queue")
    _name(hello.node, "hello.node", MAX_NODE)
    _name(hello.worker_id, "hello.worker_id", MAX_WORKER_ID_LENGTH)
    _name(hello.version, "hello.version", _MAX_SHORT_TEXT)
    _name(hello.resume_secret, "hello.resume_secret", MAX_RESUME_SECRET)
    if hello.resume_secret and not hello.pilot_id:
        raise InvalidArgument("hello.pilot_id is required with a resume secret", field="hello.pilot_id")
    _resources(hello.resources, "hello.resources")
    if len(hello.held_jobs) > MAX_HELD_JOBS:
        raise InvalidArgument(f"hello.held_jobs has more than {MAX_HELD_JOBS} jobs", field="hello.held_jobs")
    for index, held in enumerate(hello.held_jobs):
        _at_least(held.job_id, 1, f"hello.held_jobs[{index}].job_id")
        _at_least(held.attempt, 1, f"hello.held_jobs[{index}].attempt")


def check_request(request: dispatch_pb2.RequestJobs, where: str) -> None:
    _at_least(request.count, 0, f"{where}.count")
    if request.count > MAX_JOBS_PER_REQUEST:
        raise InvalidArgument(
            f"{where}.count may be at most {MAX_JOBS_PER_REQUEST}, not {request.count}", field=f"{where}.count"
        )
    _resources(request.resources, f"{where}.resources")


def _check_update(update: dispatch_pb2.JobUpdate, where: str) -> None:
    _at_least(update.job_id, 1, f"{where}.job_id")
    _at_least(update.attempt, 1, f"{where}.attempt")
    if update.state not in _STATES:
        raise InvalidArgument(f"{where}.state must be a job state, not {update.state}", field=f"{where}.state")
    _text(update.error_diag, f"{where}.error_diag")
    _text(update.log_tail, f"{where}.log_tail")
    _at_least(update.max_rss_mb, 0, f"{where}.max_rss_mb")
    if not math.isfinite(update.cpu_seconds):
        raise InvalidArgument(f"{where}.cpu_seconds must be a number", field=f"{where}.cpu_seconds")
    _at_least(update.cpu_seconds, 0, f"{where}.cpu_seconds")
    for index, file in enumerate(update.output_files):
        file_where = f"{where}.output_files[{index}]"
        _name(file.lfn, f"{file_where}.lfn", MAX_LFN_LENGTH, required=True)
        try:
            check_storage_element(file.storage_element, f"{file_where}.storage_element")
        except Violation as violation:
            raise InvalidArgument.of(violation) from None
        _at_least(file.size_bytes, 0, f"{file_where}.size_bytes")
        if file.adler32 and not ADLER32.fullmatch(file.adler32):
            raise InvalidArgument(f"{file_where}.adler32 must be 8 lower-case hex digits",
                                  field=f"{file_where}.adler32")


def check_updates(updates: dispatch_pb2.JobUpdates) -> None:
    for index, update in enumerate(updates.updates):
        _check_update(update, f"job_updates.updates[{index}]")
    if updates.HasField("request_jobs"):
        check_request(updates.request_jobs, "job_updates.request_jobs")


def check_goodbye(goodbye: dispatch_pb2.Goodbye) -> None:
    _text(goodbye.reason, "goodbye.reason")
    if len(goodbye.reason) > _MAX_REASON:
        raise InvalidArgument(f"goodbye.reason is longer than {_MAX_REASON} characters", field="goodbye.reason")
