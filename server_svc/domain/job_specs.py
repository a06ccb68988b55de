"""What a submitted job must be, checked before anything is stored: the contract's rules
(panda_runtime.contracts.server, which JEDI and the command line apply too) on the job as the
server's defaults complete it."""

from __future__ import annotations

from dataclasses import dataclass, field

from panda_runtime.contracts import Violation
from panda_runtime.contracts import server as contract
from panda_runtime.service.errors import InvalidArgument

__all__ = ["FileSpec", "JobSpec", "contract_fields", "validate_job", "validate_queue_id"]


@dataclass
class FileSpec:
    lfn: str
    kind: str  # input | output | log
    size_bytes: int = 0
    adler32: str = ""
    storage_element: str = ""
    scope: str = ""  # empty: the owner's


@dataclass
class JobSpec:
    queue: str
    command: list[str]
    environment: dict[str, str]
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    priority: int
    max_attempts: int
    task_id: int = 0
    label: str = ""
    files: list[FileSpec] = field(default_factory=list)


def validate_queue_id(queue_id: str, field_name: str = "queue_id") -> None:
    try:
        contract.check_queue_id(queue_id, field_name)
    except Violation as violation:
        raise InvalidArgument(f"queue id {queue_id[:80]!r} must be 1-64 letters, digits, '_', '-' or '.'",
                              field=field_name) from violation


def contract_fields(spec: JobSpec) -> contract.JobFields:
    return contract.JobFields(
        queue=spec.queue, command=spec.command, environment=spec.environment, label=spec.label,
        task_id=spec.task_id, priority=spec.priority, max_attempts=spec.max_attempts, cores=spec.cores,
        memory_mb=spec.memory_mb, walltime_seconds=spec.walltime_seconds, disk_mb=spec.disk_mb,
        files=[contract.JobFileFields(f.lfn, f.kind, f.size_bytes, f.adler32, f.storage_element) for f in spec.files],
    )


def validate_job(spec: JobSpec, where: str) -> None:
    """Raise INVALID_ARGUMENT naming the field (e.g. `jobs[3].command`) that is wrong."""
    validate_queue_id(spec.queue, f"{where}.queue")
    if spec.max_attempts < 1:
        raise InvalidArgument(f"{where}: max_attempts must be 1..{contract.MAX_ATTEMPTS}, not {spec.max_attempts}",
                              field=f"{where}.max_attempts")
    try:
        contract.check_job(contract_fields(spec), where)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None
