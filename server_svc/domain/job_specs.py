"""What a submitted job must be, checked before anything is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from panda_runtime.service.errors import InvalidArgument

__all__ = ["LFN", "MAX_LFN_LENGTH", "QUEUE_ID", "FileSpec", "JobSpec", "validate_job", "validate_queue_id"]

QUEUE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_LFN_LENGTH = 255  # PanDA's limit on logical file names.
LFN = re.compile(r"^[A-Za-z0-9_.\-+:=,@%]+$")


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
    if not QUEUE_ID.match(queue_id):
        raise InvalidArgument(
            f"queue id {queue_id!r} must be 1-64 letters, digits, '_', '-' or '.'", field=field_name
        )


def validate_job(spec: JobSpec, where: str) -> None:
    """Raise INVALID_ARGUMENT naming the field (e.g. `jobs[3].command`) that is wrong."""
    validate_queue_id(spec.queue, f"{where}.queue")
    if not spec.command or not spec.command[0]:
        raise InvalidArgument(f"{where}: command is empty", field=f"{where}.command")
    for name, value in (
        ("cores", spec.cores), ("memory_mb", spec.memory_mb),
        ("walltime_seconds", spec.walltime_seconds), ("disk_mb", spec.disk_mb),
    ):
        if value < 0:
            raise InvalidArgument(f"{where}: {name} is negative ({value})", field=f"{where}.resources.{name}")
    if spec.max_attempts < 1 or spec.max_attempts > 100:
        raise InvalidArgument(
            f"{where}: max_attempts must be 1..100, not {spec.max_attempts}", field=f"{where}.max_attempts"
        )
    seen: set[tuple[str, str]] = set()
    for index, file in enumerate(spec.files):
        file_where = f"{where}.files[{index}]"
        if not file.lfn or len(file.lfn) > MAX_LFN_LENGTH or not LFN.match(file.lfn):
            raise InvalidArgument(
                f"{file_where}: logical file name {file.lfn!r} is empty, longer than {MAX_LFN_LENGTH} "
                "characters, or has characters other than letters, digits and _.-+:=,@%",
                field=f"{file_where}.lfn",
            )
        if file.kind not in ("input", "output", "log"):
            raise InvalidArgument(f"{file_where}: kind must be input, output or log", field=f"{file_where}.kind")
        if file.adler32 and not re.fullmatch(r"[0-9a-f]{8}", file.adler32):
            raise InvalidArgument(
                f"{file_where}: adler32 must be 8 lower-case hex digits", field=f"{file_where}.adler32"
            )
        if file.size_bytes < 0:
            raise InvalidArgument(f"{file_where}: size is negative", field=f"{file_where}.size_bytes")
        key = (file.kind, file.lfn)
        if key in seen:
            raise InvalidArgument(f"{file_where}: {file.lfn} is listed twice", field=f"{file_where}.lfn")
        seen.add(key)
