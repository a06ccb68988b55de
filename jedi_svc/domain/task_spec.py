"""A submitted task's parameters, with defaults applied and every check a user can act on.
No I/O: the datasets themselves are checked by the refiner."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jedi_svc.domain.splitting import SplitRule
from jedi_svc.domain.templates import TemplateError, check_output_pattern, check_transformation
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.scopes import user_scope

__all__ = ["DATASET_NAME", "MAX_PRIORITY", "QUEUE_NAME", "TaskSpec", "check_dataset_name", "validate"]

DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,254}$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_PRIORITY = 100_000


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
    if not DATASET_NAME.match(name or ""):
        raise InvalidArgument(
            f"{field_name}: {name!r} is not a dataset name (letters, digits, '.', '_', '-', ':'; "
            "at most 255 characters, starting with a letter or digit)", field=field_name,
        )


def validate(spec: TaskSpec) -> None:
    """INVALID_ARGUMENT naming the first bad field."""
    if not spec.task_name.strip():
        raise InvalidArgument("task_name is required", field="params.task_name")
    if len(spec.task_name) > 256:
        raise InvalidArgument("task_name is longer than 256 characters", field="params.task_name")
    if len(spec.owner) > 256 or len(spec.working_group) > 256:
        raise InvalidArgument("owner and working_group are at most 256 characters", field="params.owner")
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
    except TemplateError as error:
        raise InvalidArgument(str(error), field="params.output_file_pattern") from None
    if spec.split.value <= 0:
        raise InvalidArgument("the split rule's value must be positive", field="params.split_rule")
    if spec.split.kind in ("files", "events") and spec.split.value != int(spec.split.value):
        raise InvalidArgument("files and events per job are whole numbers", field="params.split_rule")
    for name in ("cores", "memory_mb", "walltime_seconds", "disk_mb"):
        if getattr(spec, name) < 0:
            raise InvalidArgument(f"resources.{name} must not be negative", field=f"params.resources.{name}")
    if abs(spec.priority) > MAX_PRIORITY:
        raise InvalidArgument(f"priority must be within ±{MAX_PRIORITY}", field="params.priority")
    if not 1 <= spec.max_attempts <= 100:
        raise InvalidArgument("max_attempts must be between 1 and 100", field="params.max_attempts")
    if not 0 <= spec.scout_jobs <= 1000:
        raise InvalidArgument("scout_jobs must be between 0 and 1000", field="params.scout_jobs")
    for name in (*spec.queues, *spec.excluded_queues):
        if not QUEUE_NAME.match(name):
            raise InvalidArgument(f"{name!r} is not a queue name", field="params.queues")
    if set(spec.queues) and set(spec.queues) <= set(spec.excluded_queues):
        raise InvalidArgument("every allowed queue is also excluded", field="params.excluded_queues")
    if spec.max_failure_rate < 0:
        raise InvalidArgument("max_failure_rate must not be negative", field="params.max_failure_rate")
    for key in spec.environment:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            raise InvalidArgument(f"{key!r} is not an environment variable name", field="params.environment")
