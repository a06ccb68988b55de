"""The rules of panda.jedi.v1's fields: what JEDI takes at its edge (tasks, datasets), what it
checks again of a task before it splits one, and what the command line checks before it sends
a task or a dataset. A dataset's files become jobs' inputs, so their names follow the server's
rule for logical file names; a task's transformation and environment become jobs' commands and
environments, and follow the server's rules too."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from panda_runtime.contracts import server
from panda_runtime.contracts.rules import Violation, check_finite, check_name, check_range, check_text

__all__ = [
    "DATASET_NAME", "DATASET_SORT_FIELDS", "MAX_DATASET_FILES", "MAX_EVENTS_PER_JOB", "MAX_FILES_PER_JOB",
    "MAX_GB_PER_JOB", "MAX_PRIORITY", "MAX_QUEUES", "MAX_SCOUT_JOBS", "MAX_STORAGE_ELEMENTS", "MAX_TASK_NAME_LENGTH",
    "MAX_TASK_TEXT_LENGTH", "MAX_VO_LENGTH", "SPLIT_KINDS", "TASK_COMMAND_STATES", "TASK_GROUP_FIELDS",
    "TASK_SORT_FIELDS",
    "check_dataset_file", "check_dataset_name", "check_failure_rate", "check_output_file_pattern", "check_priority",
    "check_queue_names", "check_resources", "check_scout_jobs", "check_split_rule", "check_task_name",
    "check_task_text",
]

# What ListTasks sorts by (order_by) and CountTasks groups by (group_by); each is a filter field too.
TASK_SORT_FIELDS = ("task_id", "create_time", "update_time", "priority", "state", "owner", "vo", "working_group",
                    "task_name")
TASK_GROUP_FIELDS = ("state", "owner", "vo", "working_group", "priority")
# What ListDatasets sorts by (order_by); each is a filter field too. dataset_id is the name.
DATASET_SORT_FIELDS = ("dataset_id", "create_time", "owner", "kind", "task_id")

# The commands on a task and the states (lower-case names) it takes them in, as PanDA has them:
# JEDI refuses a command in any other state; the monitor offers each only where it applies.
_ANY_LIVE = frozenset({"registered", "defined", "ready", "scouting", "scouted", "running", "pending", "paused",
                       "throttled", "exhausted", "finishing", "toretry"})
TASK_COMMAND_STATES: dict[str, frozenset[str]] = {
    "kill": _ANY_LIVE,
    "finish": frozenset({"ready", "pending", "scouting", "scouted", "running", "paused", "throttled", "exhausted"}),
    "retry": frozenset({"finished", "failed", "aborted", "exhausted"}),
    "pause": frozenset({"registered", "defined", "ready", "pending", "scouting", "scouted", "running", "throttled"}),
    "resume": frozenset({"paused", "throttled"}),
    "reassign": frozenset({"ready", "pending", "scouting", "scouted", "running", "paused", "throttled"}),
    "priority": _ANY_LIVE,
}

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}")
MAX_TASK_NAME_LENGTH = 256
# Owner and working group columns; the VO's.
MAX_TASK_TEXT_LENGTH = 256
MAX_VO_LENGTH = server.MAX_VO_LENGTH
MAX_PRIORITY = 100_000
MAX_SCOUT_JOBS = 1000
MAX_QUEUES = 1000
# Split rules: "files", "events" (whole numbers) and "size" (GB per job, 10^9 bytes).
SPLIT_KINDS = ("files", "events", "size")
MAX_FILES_PER_JOB = server.MAX_FILES_PER_JOB
# Events per job are kept as a double: beyond 2^53 they are no longer whole numbers.
MAX_EVENTS_PER_JOB = 2**53 - 1
# A petabyte per job; more would not fit the byte counts jobs are split by.
MAX_GB_PER_JOB = 1_000_000.0
# Files of one dataset registered at once, and replicas named per file.
MAX_DATASET_FILES = 200_000
MAX_STORAGE_ELEMENTS = 100
MAX_OUTPUT_PATTERN_LENGTH = server.MAX_LFN_LENGTH
# A field of the output file pattern may set a width of at most two digits, e.g. {task_id:08d}.
_PATTERN_FIELD = re.compile(r"\{([^{}]*)\}")
_PATTERN_SPEC = re.compile(r"0?\d{0,2}d?")


def check_dataset_name(value: str, field: str = "dataset_id") -> str:
    return check_name(value, field, DATASET_NAME, "a dataset name (letters, digits, '.', '_', '-', ':'; at most "
                                                  "255 characters, starting with a letter or digit)")


def check_task_name(value: str, field: str = "params.task_name") -> str:
    if not value.strip():
        raise Violation(field, "task_name is required")
    return check_text(value, field, max_length=MAX_TASK_NAME_LENGTH, what="task_name")


def check_task_text(value: str, field: str, *, max_length: int = MAX_TASK_TEXT_LENGTH) -> str:
    """Owner, working group, VO: short text, no NUL."""
    return check_text(value, field, max_length=max_length, what=field.rsplit(".", 1)[-1])


def check_split_rule(kind: str, value: float, field: str = "params.split_rule") -> None:
    """Files or events per job: a positive whole number; GB per job: a positive finite number."""
    if kind not in SPLIT_KINDS:
        raise Violation(field, f"unknown split rule {kind!r}")
    if kind == "size":
        check_finite(value, f"{field}.gb_per_job", positive=True, maximum=MAX_GB_PER_JOB, what="gb_per_job")
        return
    name, limit = ("files_per_job", MAX_FILES_PER_JOB) if kind == "files" else ("events_per_job", MAX_EVENTS_PER_JOB)
    check_finite(value, f"{field}.{name}", positive=True, maximum=limit, what=name)
    if value != math.floor(value):
        raise Violation(f"{field}.{name}", f"{name} must be a whole number")


def check_resources(cores: int, memory_mb: int, walltime_seconds: int, disk_mb: int,
                    field: str = "params.resources") -> None:
    for name, value in (("cores", cores), ("memory_mb", memory_mb), ("walltime_seconds", walltime_seconds),
                        ("disk_mb", disk_mb)):
        if value < 0:
            raise Violation(f"{field}.{name}", f"resources.{name} must not be negative")


def check_priority(value: int, field: str = "params.priority") -> int:
    if abs(value) > MAX_PRIORITY:
        raise Violation(field, f"priority must be within ±{MAX_PRIORITY}")
    return value


def check_failure_rate(value: float, field: str = "params.max_failure_rate") -> float:
    """0 (the default, 0.5) or more; 1 or more never exhausts the task."""
    return check_finite(value, field, what="max_failure_rate")


def check_queue_names(names: Sequence[str], field: str) -> None:
    if len(names) > MAX_QUEUES:
        raise Violation(field, f"{len(names)} queues; at most {MAX_QUEUES}")
    for name in names:
        server.check_queue_id(name, field)


def check_output_file_pattern(pattern: str, field: str = "params.output_file_pattern") -> str:
    """The pattern's text (the names it makes are checked as logical file names by JEDI, which
    knows the dataset); its fields may set a width of at most two digits."""
    check_text(pattern, field, max_length=MAX_OUTPUT_PATTERN_LENGTH, what="output_file_pattern")
    for spec in (f.partition(":")[2] for f in _PATTERN_FIELD.findall(pattern)):
        if not _PATTERN_SPEC.fullmatch(spec):
            raise Violation(field, f"format {spec!r} in the output file pattern: only a width of at most two "
                                   "digits, as in {task_id:08d}")
    return pattern


def check_dataset_file(lfn: str, size_bytes: int, events: int, storage_elements: Sequence[str], field: str) -> None:
    """A file to register: a logical file name the server takes (it becomes jobs' input), no
    negative size or events, at most MAX_STORAGE_ELEMENTS replicas whose names a column holds.
    Its checksum is checked by JEDI, which pads it first."""
    server.check_lfn(lfn, f"{field}.lfn")
    if size_bytes < 0 or events < 0:
        raise Violation(field, "size and events must not be negative")
    if len(storage_elements) > MAX_STORAGE_ELEMENTS:
        raise Violation(f"{field}.storage_elements", f"{len(storage_elements)} storage elements; "
                                                     f"at most {MAX_STORAGE_ELEMENTS}")
    for index, element in enumerate(storage_elements):
        server.check_storage_element(element, f"{field}.storage_elements[{index}]")


def check_scout_jobs(value: int, field: str = "params.scout_jobs") -> int:
    return check_range(value, field, maximum=MAX_SCOUT_JOBS, what="scout_jobs")
