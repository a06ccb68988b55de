"""A submitted task's parameters, with defaults applied and every check a user can act on.
No I/O: the datasets themselves are checked by the refiner."""

from __future__ import annotations

from dataclasses import dataclass, field

from jedi_svc.domain.splitting import SplitRule
from jedi_svc.domain.templates import TemplateError, check_output_pattern, check_transformation, output_name
from panda_runtime.contracts import Violation, rules, server
from panda_runtime.contracts import jedi as contract
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.scopes import user_scope

__all__ = ["DATASET_NAME", "MAX_PRIORITY", "QUEUE_NAME", "TaskSpec", "check_dataset_name", "validate"]

DATASET_NAME = contract.DATASET_NAME
QUEUE_NAME = server.QUEUE_ID
MAX_PRIORITY = contract.MAX_PRIORITY
# What the output names of a task are tried with at submission.
_LONG_TASK_ID, _LONG_SERIAL, _LONG_ATTEMPT = 10**12 - 1, 10**9 - 1, 999


@dataclass
class TaskSpec:
    task_name: str
    owner: str
    working_group: str
    transformation: list[str]
    input_datasets: list[str]
    output_dataset: str
    output_file_pattern: str
    split: SplitRule
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    priority: int
    max_attempts: int
    scout_jobs: int
    queues: list[str] = field(default_factory=list)
    excluded_queues: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    max_failure_rate: float = 0.5
    # Virtual organisation of the task (and of its jobs).
    vo: str = ""

    @property
    def output_scope(self) -> str:
        """The scope of its output dataset and its jobs' outputs: the owner's."""
        return user_scope(self.owner)


def check_dataset_name(name: str, field_name: str) -> None:
    try:
        contract.check_dataset_name(name or "", field_name)
    except Violation:
        raise InvalidArgument(
            f"{field_name}: {name[:80]!r} is not a dataset name (letters, digits, '.', '_', '-', ':'; "
            "at most 255 characters, starting with a letter or digit)", field=field_name,
        ) from None


def validate(spec: TaskSpec) -> None:
    """INVALID_ARGUMENT naming the first bad field: the contract's rules (panda.jedi.v1, and
    panda.server.v1's for what becomes the jobs' commands, environments and file names), then
    JEDI's own (placeholders, datasets named once, queues not all excluded)."""
    try:
        _check_fields(spec)
    except Violation as violation:
        raise InvalidArgument.of(violation) from None
    try:
        check_transformation(spec.transformation)
    except TemplateError as error:
        raise InvalidArgument(str(error), field="params.transformation") from None
    if not spec.input_datasets:
        raise InvalidArgument("at least one input dataset is required", field="params.input_datasets")
    for name in spec.input_datasets:
        check_dataset_name(name, "params.input_datasets")
    if len(set(spec.input_datasets)) != len(spec.input_datasets):
        raise InvalidArgument("an input dataset is named twice", field="params.input_datasets")
    check_dataset_name(spec.output_dataset, "params.output_dataset")
    if spec.output_dataset in spec.input_datasets:
        raise InvalidArgument("the output dataset cannot be an input too", field="params.output_dataset")
    try:
        check_output_pattern(spec.output_file_pattern)
        _check_output_names(spec)
    except TemplateError as error:
        raise InvalidArgument(str(error), field="params.output_file_pattern") from None
    if set(spec.queues) and set(spec.queues) <= set(spec.excluded_queues):
        raise InvalidArgument("every allowed queue is also excluded", field="params.excluded_queues")


def _check_fields(spec: TaskSpec) -> None:
    contract.check_task_name(spec.task_name)
    contract.check_task_text(spec.owner, "params.owner")
    contract.check_task_text(spec.working_group, "params.working_group")
    contract.check_task_text(spec.vo, "params.vo", max_length=contract.MAX_VO_LENGTH)
    server.check_command(spec.transformation, "params.transformation")
    contract.check_output_file_pattern(spec.output_file_pattern)
    contract.check_split_rule(spec.split.kind, spec.split.value)
    contract.check_resources(spec.cores, spec.memory_mb, spec.walltime_seconds, spec.disk_mb)
    contract.check_priority(spec.priority)
    rules.check_range(spec.max_attempts, "params.max_attempts", minimum=1, maximum=server.MAX_ATTEMPTS,
                      what="max_attempts")
    contract.check_scout_jobs(spec.scout_jobs)
    contract.check_queue_names(spec.queues, "params.queues")
    contract.check_queue_names(spec.excluded_queues, "params.excluded_queues")
    contract.check_failure_rate(spec.max_failure_rate)
    server.check_environment(spec.environment, "params.environment")


def _check_output_names(spec: TaskSpec) -> None:
    """The names the pattern makes, for this task's output dataset, must be logical file names
    the server takes, with long task ids, serials and attempts too (the jobs JEDI makes are
    checked again as they are made)."""
    sample = output_name(spec.output_file_pattern, task_id=_LONG_TASK_ID, dataset=spec.output_dataset,
                         serial=_LONG_SERIAL, attempt=_LONG_ATTEMPT)
    try:
        server.check_lfn(sample, "params.output_file_pattern")
    except Violation as violation:
        raise TemplateError(f"the output file pattern makes names the server refuses: {violation.description}") \
            from None
