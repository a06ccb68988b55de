"""A job's command and output name from the task's templates (PanDA's job parameters with
placeholders), and the checks a template must pass at submission. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "DEFAULT_OUTPUT_PATTERN", "OUTPUT_PLACEHOLDERS", "TRANSFORMATION_PLACEHOLDERS", "JobValues", "TemplateError",
    "check_output_pattern", "check_transformation", "expand_transformation", "output_name",
]

# Placeholders of the transformation, replaced per job.
TRANSFORMATION_PLACEHOLDERS = ("IN", "IN_CSV", "OUT", "SKIP_EVENTS", "MAX_EVENTS", "FIRST_EVENT", "TASK_ID",
                               "SERIAL", "ATTEMPT")
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")

# Placeholders of the output file name pattern.
OUTPUT_PLACEHOLDERS = ("serial", "task_id", "dataset", "attempt")
DEFAULT_OUTPUT_PATTERN = "{dataset}._{serial}.out"
_FIELD = re.compile(r"\{([^{}]*)\}")


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class JobValues:
    """What the placeholders of one job stand for."""

    inputs: list[str]
    output: str
    task_id: int
    serial: int
    attempt: int
    # Events splitting: events to skip in the job's input stream, and events to process (0 = all).
    skip_events: int = 0
    max_events: int = 0


def check_transformation(argv: list[str]) -> None:
    if not argv or not argv[0].strip():
        raise TemplateError("transformation is empty: give the command to run")
    for arg in argv:
        for name in _PLACEHOLDER.findall(arg):
            if name not in TRANSFORMATION_PLACEHOLDERS:
                known = ", ".join("${" + p + "}" for p in TRANSFORMATION_PLACEHOLDERS)
                raise TemplateError(f"unknown placeholder ${{{name}}} in the transformation; known: {known}")


def expand_transformation(argv: list[str], values: JobValues) -> list[str]:
    replacements = {
        "IN": " ".join(values.inputs),
        "IN_CSV": ",".join(values.inputs),
        "OUT": values.output,
        "SKIP_EVENTS": str(values.skip_events),
        "MAX_EVENTS": str(values.max_events),
        "FIRST_EVENT": str(values.skip_events + 1),
        "TASK_ID": str(values.task_id),
        "SERIAL": str(values.serial),
        "ATTEMPT": str(values.attempt),
    }
    command: list[str] = []
    for arg in argv:
        if arg == "${IN}":
            command.extend(values.inputs)
            continue
        command.append(_PLACEHOLDER.sub(lambda m: replacements[m.group(1)], arg))
    return command


def check_output_pattern(pattern: str) -> None:
    fields = _FIELD.findall(pattern)
    unknown = [f for f in fields if f.split(":")[0] not in OUTPUT_PLACEHOLDERS]
    if unknown:
        raise TemplateError(f"unknown field {{{unknown[0]}}} in the output file pattern; "
                            f"known: {', '.join('{' + p + '}' for p in OUTPUT_PLACEHOLDERS)}")
    names = {f.split(":")[0] for f in fields}
    if "serial" not in names:
        raise TemplateError("the output file pattern needs {serial}, so each job's output has its own name")
    if not names & {"task_id", "dataset"}:
        raise TemplateError("the output file pattern needs {task_id} or {dataset}, so names differ between tasks")
    try:
        name = output_name(pattern, task_id=1, dataset="ds", serial=1, attempt=1)
    except (ValueError, KeyError, IndexError) as error:
        raise TemplateError(f"bad output file pattern {pattern!r}: {error}") from error
    if "/" in name or name.startswith("."):
        raise TemplateError(f"output file names must not contain '/' or start with '.': {name!r}")


def output_name(pattern: str, *, task_id: int, dataset: str, serial: int, attempt: int) -> str:
    """`{serial}` is zero-padded to six digits, as PanDA writes it (`._000042`)."""
    serial_text = f"{serial:06d}"
    return pattern.replace("{serial}", serial_text).format(
        task_id=task_id, dataset=dataset, serial=serial, attempt=attempt
    )
