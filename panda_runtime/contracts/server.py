"""The rules of panda.server.v1's fields: what the server takes at its edge, and what JEDI and
the command line check before they send it (a job JEDI makes passes them, or it is never
sent). Every length is that of the column the value is stored in."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from panda_runtime.contracts.rules import (
    INT64_MAX,
    Violation,
    check_name,
    check_range,
    check_text,
)

__all__ = [
    "DEFAULT_MAX_SUBMIT_JOBS",
    "ENV_KEY",
    "FILE_KINDS",
    "JOB_COMMAND_STATES",
    "JOB_GROUP_FIELDS",
    "JOB_PILOT_STATES",
    "JOB_QUEUED_STATES",
    "JOB_SORT_FIELDS",
    "LFN",
    "MAX_ACTION_JOB_IDS",
    "MAX_ARGUMENTS",
    "MAX_ARGUMENT_LENGTH",
    "MAX_ATTEMPTS",
    "MAX_ENVIRONMENT",
    "MAX_ENV_KEY_LENGTH",
    "MAX_ENV_VALUE_LENGTH",
    "MAX_FILES_PER_JOB",
    "MAX_LABEL_LENGTH",
    "MAX_LFN_LENGTH",
    "MAX_NODE_LENGTH",
    "MAX_OWNER_LENGTH",
    "MAX_PILOT_ID_LENGTH",
    "MAX_QUEUE_DESCRIPTION_LENGTH",
    "MAX_REASON_LENGTH",
    "MAX_STORAGE_ELEMENT_LENGTH",
    "MAX_VO_LENGTH",
    "MAX_WATCH_JOB_IDS",
    "QUEUE_ID",
    "STORAGE_ELEMENT_ID",
    "JobFields",
    "JobFileFields",
    "check_adler32",
    "check_command",
    "check_environment",
    "check_job",
    "check_job_file",
    "check_job_ids",
    "check_label",
    "check_lfn",
    "check_queue_description",
    "check_queue_id",
    "check_reason",
    "check_storage_element",
]

# The commands on a job and the states (lower-case names) it takes them in: a kill while it
# waits for a pilot or is held by one, a reassign only while it waits. The server refuses them
# in any other state; the monitor offers each only where it applies.
JOB_QUEUED_STATES = frozenset({"defined", "pending", "activated", "throttled"})
JOB_PILOT_STATES = frozenset({"sent", "starting", "running", "holding", "transferring"})
JOB_COMMAND_STATES: dict[str, frozenset[str]] = {
    "kill": JOB_QUEUED_STATES | JOB_PILOT_STATES,
    "reassign": JOB_QUEUED_STATES,
}

QUEUE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
# PanDA's limit on logical file names, and their alphabet.
MAX_LFN_LENGTH = 255
LFN = re.compile(r"[A-Za-z0-9_.\-+:=,@%]+")
# Names a file in the payload's work directory cannot have.
_NOT_FILE_NAMES = frozenset({".", ".."})
FILE_KINDS = ("input", "output", "log")
ADLER32 = re.compile(r"[0-9a-f]{8}")
MAX_LABEL_LENGTH = 256
# Who a job is for, and its virtual organisation (SubmitJobsRequest.owner and .vo).
MAX_OWNER_LENGTH = 256
MAX_VO_LENGTH = 64
# A configured storage element's id: as a queue's.
STORAGE_ELEMENT_ID = QUEUE_ID
MAX_STORAGE_ELEMENT_LENGTH = 64
MAX_FILES_PER_JOB = 10_000
# A POSIX environment variable name: '=' ends a name, so it never is in one.
ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_KEY_LENGTH = 256
# Linux's limit on one argument or one environment string (MAX_ARG_STRLEN).
MAX_ARGUMENT_LENGTH = 131_072
MAX_ENV_VALUE_LENGTH = MAX_ARGUMENT_LENGTH
MAX_ARGUMENTS = 10_000
MAX_ENVIRONMENT = 1_000
MAX_ATTEMPTS = 100
# Reasons recorded in a job's history (KillJobs), queue descriptions.
MAX_REASON_LENGTH = 4_000
MAX_QUEUE_DESCRIPTION_LENGTH = 4_000
# SubmitJobs: the most jobs one call carries unless the server is set otherwise (its
# max_submit_batch); more is RESOURCE_EXHAUSTED, and `panda submit -f` splits into calls of this many.
DEFAULT_MAX_SUBMIT_JOBS = 5_000
# What ListJobs sorts by (order_by) and CountJobs groups by (group_by); each is a filter field too.
JOB_SORT_FIELDS = ("job_id", "create_time", "update_time", "priority", "state", "queue", "owner", "vo", "task_id",
                   "attempt", "error_code", "label")
JOB_GROUP_FIELDS = ("state", "queue", "owner", "vo", "task_id", "error_code", "attempt", "priority", "label", "node",
                    "pilot_id")
# KillJobs, ReassignJobs, SetJobsPriority; WatchJobs follows at most this many jobs by id.
MAX_ACTION_JOB_IDS = 10_000
MAX_WATCH_JOB_IDS = 10_000
# The pilot stream's Hello.
MAX_PILOT_ID_LENGTH = 256
MAX_NODE_LENGTH = 256


@dataclass(frozen=True, slots=True)
class JobFileFields:
    """A Job.files element as the server takes it."""

    lfn: str
    kind: str  # input, output or log
    size_bytes: int = 0
    adler32: str = ""
    storage_element: str = ""


@dataclass(frozen=True, slots=True)
class JobFields:
    """The fields of a submitted Job the server reads (zero numbers take the server's defaults)."""

    queue: str
    command: Sequence[str]
    environment: Mapping[str, str] = field(default_factory=dict)
    label: str = ""
    task_id: int = 0
    priority: int = 0
    max_attempts: int = 0
    cores: int = 0
    memory_mb: int = 0
    walltime_seconds: int = 0
    disk_mb: int = 0
    files: Sequence[JobFileFields] = ()


def check_queue_id(value: str, field: str = "queue_id") -> str:
    return check_name(value, field, QUEUE_ID, "a queue id: 1-64 letters, digits, '_', '-' or '.'")


def check_lfn(value: str, field: str = "lfn") -> str:
    """A logical file name: 1-255 letters, digits and _.-+:=,@% , and not '.' or '..' (the pilot
    makes it a file in the payload's work directory)."""
    if not value or len(value) > MAX_LFN_LENGTH or not LFN.fullmatch(value) or value in _NOT_FILE_NAMES:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise Violation(field, f"logical file name {shown!r} is empty, longer than {MAX_LFN_LENGTH} characters, "
                               "'.' or '..', or has characters other than letters, digits and _.-+:=,@%")
    return value


def check_adler32(value: str, field: str = "adler32") -> str:
    """Empty (not known), or 8 lower-case hex digits."""
    if value and not ADLER32.fullmatch(value):
        raise Violation(field, "adler32 must be 8 lower-case hex digits")
    return value


def check_storage_element(value: str, field: str = "storage_element") -> str:
    """A configured storage element's id, or empty (where the field may be: a job file's means its
    queue's). A URL is refused: elements are named by their id only."""
    if not value or STORAGE_ELEMENT_ID.fullmatch(value):
        return value
    if "://" in value or value.startswith("/"):
        raise Violation(field, "storage elements are named by their configured id (see `panda se list`), not by a URL")
    shown = value if len(value) <= 80 else value[:77] + "..."
    raise Violation(field, f"{shown!r} is not a storage element id: 1-64 letters, digits, '_', '-' or '.'")


def check_label(value: str, field: str = "label") -> str:
    return check_text(value, field, max_length=MAX_LABEL_LENGTH, what="label")


def check_reason(value: str, field: str = "reason") -> str:
    return check_text(value, field, max_length=MAX_REASON_LENGTH, what="reason")


def check_queue_description(value: str, field: str = "queue.description") -> str:
    return check_text(value, field, max_length=MAX_QUEUE_DESCRIPTION_LENGTH, what="description")


def check_command(command: Sequence[str], field: str = "command") -> None:
    """A command to run without a shell: a non-empty program, at most MAX_ARGUMENTS arguments of
    at most MAX_ARGUMENT_LENGTH characters, none with a NUL (exec cannot pass one)."""
    if not command or not command[0]:
        raise Violation(field, "command is empty")
    if len(command) > MAX_ARGUMENTS:
        raise Violation(field, f"command has {len(command)} arguments; at most {MAX_ARGUMENTS}")
    for index, argument in enumerate(command):
        check_text(argument, f"{field}[{index}]", max_length=MAX_ARGUMENT_LENGTH, what="argument")


def check_environment(environment: Mapping[str, str], field: str = "environment") -> None:
    """Variables for the payload: names of letters, digits and '_' not starting with a digit
    (so never '='), values without NUL."""
    if len(environment) > MAX_ENVIRONMENT:
        raise Violation(field, f"{len(environment)} environment variables; at most {MAX_ENVIRONMENT}")
    for key, value in environment.items():
        if len(key) > MAX_ENV_KEY_LENGTH or not ENV_KEY.fullmatch(key):
            shown = key if len(key) <= 80 else key[:77] + "..."
            raise Violation(field, f"{shown!r} is not an environment variable name (letters, digits and '_', "
                                   f"not starting with a digit, at most {MAX_ENV_KEY_LENGTH} characters)")
        check_text(value, f"{field}[{key}]", max_length=MAX_ENV_VALUE_LENGTH, what=f"the value of {key}")


def check_job_file(file: JobFileFields, field: str) -> None:
    check_lfn(file.lfn, f"{field}.lfn")
    if file.kind not in FILE_KINDS:
        raise Violation(f"{field}.kind", "kind must be input, output or log")
    check_adler32(file.adler32, f"{field}.adler32")
    if file.size_bytes < 0:
        raise Violation(f"{field}.size_bytes", "size is negative")
    check_storage_element(file.storage_element, f"{field}.storage_element")


def _good_text(value: str, max_length: int) -> bool:
    return len(value) <= max_length and "\x00" not in value


def _good_file(file: JobFileFields) -> bool:
    return (0 < len(file.lfn) <= MAX_LFN_LENGTH and LFN.fullmatch(file.lfn) is not None
            and file.lfn not in _NOT_FILE_NAMES and file.kind in FILE_KINDS and file.size_bytes >= 0
            and (not file.adler32 or ADLER32.fullmatch(file.adler32) is not None)
            and (not file.storage_element or STORAGE_ELEMENT_ID.fullmatch(file.storage_element) is not None))


def _good_job(job: JobFields) -> bool:
    """Whether every rule of check_job holds, without naming anything: the quick answer for the
    jobs that pass (JEDI checks every job it makes), the detailed check only for one that fails."""
    command, environment, files = job.command, job.environment, job.files
    return (
        QUEUE_ID.fullmatch(job.queue) is not None and 0 <= job.task_id <= INT64_MAX
        and 0 <= job.max_attempts <= MAX_ATTEMPTS
        and 0 < len(command) <= MAX_ARGUMENTS and bool(command[0])
        and all(_good_text(argument, MAX_ARGUMENT_LENGTH) for argument in command)
        and len(environment) <= MAX_ENVIRONMENT
        and all(len(key) <= MAX_ENV_KEY_LENGTH and ENV_KEY.fullmatch(key) is not None
                and _good_text(value, MAX_ENV_VALUE_LENGTH) for key, value in environment.items())
        and min(job.cores, job.memory_mb, job.walltime_seconds, job.disk_mb) >= 0
        and len(files) <= MAX_FILES_PER_JOB and all(_good_file(file) for file in files)
        and len({(file.kind, file.lfn) for file in files}) == len(files)
        and _good_text(job.label, MAX_LABEL_LENGTH)
    )


def check_job(job: JobFields, where: str = "job") -> None:
    """Every field of a job to submit, in the order of the message; the first at fault raises,
    named under `where` (e.g. `jobs[3]`)."""
    if _good_job(job):
        return
    check_queue_id(job.queue, f"{where}.queue")
    check_range(job.task_id, f"{where}.task_id", what="task_id")
    check_range(job.max_attempts, f"{where}.max_attempts", maximum=MAX_ATTEMPTS, what="max_attempts")
    check_command(job.command, f"{where}.command")
    check_environment(job.environment, f"{where}.environment")
    for name in ("cores", "memory_mb", "walltime_seconds", "disk_mb"):
        value = getattr(job, name)
        if value < 0:
            raise Violation(f"{where}.resources.{name}", f"{name} is negative ({value})")
    if len(job.files) > MAX_FILES_PER_JOB:
        raise Violation(f"{where}.files", f"{len(job.files)} files; at most {MAX_FILES_PER_JOB}")
    seen: set[tuple[str, str]] = set()
    for index, file in enumerate(job.files):
        file_field = f"{where}.files[{index}]"
        check_job_file(file, file_field)
        if (file.kind, file.lfn) in seen:
            raise Violation(f"{file_field}.lfn", f"{file.lfn} is listed twice")
        seen.add((file.kind, file.lfn))
    check_label(job.label, f"{where}.label")


def check_job_ids(job_ids: Iterable[int], field: str = "job_ids", *, limit: int = MAX_ACTION_JOB_IDS,
                  required: bool = True) -> list[int]:
    """Positive job ids, each once, at most `limit` of them."""
    ids = list(dict.fromkeys(job_ids))
    if required and not ids:
        raise Violation(field, "job_ids is empty")
    if len(ids) > limit:
        raise Violation(field, f"{len(ids)} job ids; at most {limit:,}")
    if any(i <= 0 for i in ids):
        raise Violation(field, "job ids must be positive")
    return ids
