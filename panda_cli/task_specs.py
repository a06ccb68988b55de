"""Task files (`panda task submit -f task.yaml`) -> TaskParams, and the task list filter.
Nothing here talks to a service, so all of it is unit-tested directly. The format is in the
README ("Task files")."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import yaml

from panda.common.v1 import resources_pb2
from panda.jedi.v1 import task_pb2
from panda_runtime.contracts import Violation, rules
from panda_runtime.contracts import jedi as jedi_contract
from panda_runtime.contracts import server as server_contract

from .specs import SpecError, parse_duration, quote_filter_string, rfc3339

__all__ = ["RESOURCE_KEYS", "SPLIT_KEYS", "TASK_KEYS", "build_task_filter", "task_from_mapping", "task_from_yaml"]

# Every key a task file may have, and what it is.
TASK_KEYS = {
    "task_name": "free-form name (required)",
    "owner": "who the task is for (default: the caller; another user needs production, service or admin)",
    "vo": "virtual organisation of the task (default: the caller's)",
    "working_group": "physics or production group",
    "transformation": "the job command with ${IN}, ${OUT}... (a string split like a shell, or a list)",
    "input_datasets": "input dataset names (or input_dataset: one name)",
    "input_dataset": "one input dataset",
    "output_dataset": "name of the output dataset the task creates (required)",
    "output_file_pattern": "output name per job, with {serial} and {dataset} or {task_id}",
    "split": "files_per_job: N, events_per_job: N or gb_per_job: X (default one file per job)",
    "resources": "cores, memory (MB), walltime (seconds or 2h), disk (MB)",
    "priority": "higher runs first",
    "max_attempts": "attempts per input file",
    "scout_jobs": "jobs run first to measure memory and walltime (0: none)",
    "queues": "queues brokerage may choose from",
    "excluded_queues": "queues brokerage must not choose",
    "environment": "extra environment of every job",
    "max_failure_rate": "fraction of failed jobs that makes the task exhausted (1: never)",
}
SPLIT_KEYS = ("files_per_job", "events_per_job", "gb_per_job")
RESOURCE_KEYS = ("cores", "memory", "walltime", "disk")


def _where(source: str, key: str) -> str:
    return f"{source}: {key}" if source else key


def _int(value: Any, what: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{what} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise SpecError(f"{what} must be at least {minimum}, not {value}")
    return value


def _names(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SpecError(f"{what} must be a name or a list of names")
    return [v.strip() for v in value]


def task_from_yaml(text: str, *, source: str = "") -> task_pb2.TaskParams:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source or 'task file'}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{source or 'task file'}: expected a mapping of task parameters (see the README)")
    return task_from_mapping(data, source=source)


def task_from_mapping(data: dict[str, Any], *, source: str = "") -> task_pb2.TaskParams:
    unknown = sorted(set(data) - set(TASK_KEYS))
    if unknown:
        raise SpecError(f"{_where(source, unknown[0])}: unknown key; known: {', '.join(TASK_KEYS)}")
    params = task_pb2.TaskParams()
    for key in ("task_name", "owner", "vo", "working_group", "output_dataset", "output_file_pattern"):
        if key in data:
            if not isinstance(data[key], str):
                raise SpecError(f"{_where(source, key)} must be text")
            setattr(params, key, data[key].strip())
    if not params.task_name:
        raise SpecError(f"{_where(source, 'task_name')} is required")
    if not params.output_dataset:
        raise SpecError(f"{_where(source, 'output_dataset')} is required")

    command = data.get("transformation")
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SpecError(f"{_where(source, 'transformation')}: {exc}") from None
    elif isinstance(command, list) and all(isinstance(a, str | int | float) for a in command):
        argv = [str(a) for a in command]
    else:
        raise SpecError(f"{_where(source, 'transformation')} is required: a command string or a list")
    if not argv:
        raise SpecError(f"{_where(source, 'transformation')} is empty")
    params.transformation.extend(argv)

    if "input_datasets" in data and "input_dataset" in data:
        raise SpecError(f"{_where(source, 'input_datasets')}: give input_datasets or input_dataset, not both")
    inputs = data.get("input_datasets", data.get("input_dataset"))
    if inputs is None:
        raise SpecError(f"{_where(source, 'input_datasets')} is required")
    params.input_datasets.extend(_names(inputs, _where(source, "input_datasets")))

    split = data.get("split")
    if split is not None:
        if not isinstance(split, dict) or len(split) != 1 or next(iter(split)) not in SPLIT_KEYS:
            raise SpecError(f"{_where(source, 'split')} must be one of {', '.join(k + ': N' for k in SPLIT_KEYS)}")
        ((kind, value),) = split.items()
        what = _where(source, f"split.{kind}")
        if kind == "gb_per_job":
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SpecError(f"{what} must be a positive number")
            params.split_rule.gb_per_job = float(value)
        else:
            setattr(params.split_rule, kind, _int(value, what, minimum=1))

    resources = data.get("resources") or {}
    if not isinstance(resources, dict):
        raise SpecError(f"{_where(source, 'resources')} must be a mapping of {', '.join(RESOURCE_KEYS)}")
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        raise SpecError(f"{_where(source, 'resources.' + unknown[0])}: unknown; known: {', '.join(RESOURCE_KEYS)}")
    params.resources.CopyFrom(resources_pb2.Resources(
        cores=_int(resources.get("cores", 0), _where(source, "resources.cores"), minimum=0),
        memory_mb=_int(resources.get("memory", 0), _where(source, "resources.memory"), minimum=0),
        walltime_seconds=parse_duration(resources.get("walltime", 0)),
        disk_mb=_int(resources.get("disk", 0), _where(source, "resources.disk"), minimum=0),
    ))

    if "priority" in data:
        params.priority = _int(data["priority"], _where(source, "priority"))
    if "max_attempts" in data:
        params.max_attempts = _int(data["max_attempts"], _where(source, "max_attempts"), minimum=1)
    if "scout_jobs" in data:
        params.scout_jobs = _int(data["scout_jobs"], _where(source, "scout_jobs"), minimum=0)
    for key in ("queues", "excluded_queues"):
        if key in data:
            getattr(params, key).extend(_names(data[key], _where(source, key)))
    env = data.get("environment") or {}
    if not isinstance(env, dict):
        raise SpecError(f"{_where(source, 'environment')} must be a mapping of NAME: value")
    for name, value in env.items():
        params.environment[str(name)] = "" if value is None else str(value)
    if "max_failure_rate" in data:
        rate = data["max_failure_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise SpecError(f"{_where(source, 'max_failure_rate')} must be a positive number (1: never exhaust)")
        params.max_failure_rate = float(rate)
    _check_contract(params, source)
    return params


def _check_contract(params: task_pb2.TaskParams, source: str) -> None:
    """What JEDI would refuse of these parameters (panda_runtime.contracts), said before sending;
    each violation names the task file's key."""
    rule = params.split_rule
    kind = rule.WhichOneof("rule")
    try:
        jedi_contract.check_task_name(params.task_name, "task_name")
        for key in ("owner", "working_group"):
            jedi_contract.check_task_text(getattr(params, key), key)
        jedi_contract.check_task_text(params.vo, "vo", max_length=jedi_contract.MAX_VO_LENGTH)
        for index, name in enumerate(params.input_datasets):
            jedi_contract.check_dataset_name(name, f"input_datasets[{index}]")
        jedi_contract.check_dataset_name(params.output_dataset, "output_dataset")
        if params.output_file_pattern:
            jedi_contract.check_output_file_pattern(params.output_file_pattern, "output_file_pattern")
        jedi_contract.check_priority(params.priority, "priority")
        if params.max_attempts:
            rules.check_range(params.max_attempts, "max_attempts", minimum=1, maximum=server_contract.MAX_ATTEMPTS,
                              what="max_attempts")
        if params.HasField("scout_jobs"):
            jedi_contract.check_scout_jobs(params.scout_jobs, "scout_jobs")
        jedi_contract.check_queue_names(list(params.queues), "queues")
        jedi_contract.check_queue_names(list(params.excluded_queues), "excluded_queues")
        if kind is not None:
            value = float(getattr(rule, kind))
            jedi_contract.check_split_rule({"files_per_job": "files", "events_per_job": "events"}.get(kind, "size"),
                                           value, "split")
        jedi_contract.check_failure_rate(params.max_failure_rate, "max_failure_rate")
        server_contract.check_command(list(params.transformation), "transformation")
        server_contract.check_environment(dict(params.environment), "environment")
    except Violation as violation:
        raise SpecError(f"{_where(source, violation.field)}: {violation.description}") from None


def build_task_filter(*, state: str | None = None, owner: str | None = None, name: str | None = None,
                      since: datetime | None = None, not_states: Iterable[str] = ()) -> str:
    """The ListTasks filter of `panda tasks`' flags; `not_states` leaves out tasks in those
    states (the filter has no OR, so "one of these" is "none of the others")."""
    parts = []
    if state:
        parts.append(f"state = {state.strip().upper().removeprefix('STATE_')}")
    parts.extend(f"state != {s.upper()}" for s in not_states)
    if owner:
        parts.append(f"owner = {quote_filter_string(owner)}")
    if name:
        parts.append(f"task_name = {quote_filter_string(name)}")
    if since:
        parts.append(f"update_time >= {quote_filter_string(rfc3339(since))}")
    return " AND ".join(parts)
