"""The refiner's rules: a registered task's inputs checked (registered -> defined), a defined
task's inputs cut into chunks (defined -> ready), a task to retry made ready. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jedi_svc.domain.splitting import Chunk, InputFile, SplitError, SplitRule, group_count, split
from jedi_svc.domain.states import TaskState
from jedi_svc.domain.tasks import TaskChange
from panda_runtime.contracts import Violation
from panda_runtime.contracts import jedi as contract

__all__ = ["Feeding", "feed", "refine", "retry"]


def refine(input_datasets: list[str], file_counts: Mapping[str, int]) -> TaskChange:
    """DEFINED when every input dataset exists (is in `file_counts`, name -> its number of
    files) and holds files; else BROKEN, naming the first that does not."""
    missing = [name for name in input_datasets if name not in file_counts]
    if missing:
        return TaskChange(TaskState.BROKEN, f"input dataset {missing[0]} not found")
    empty = [name for name in input_datasets if not file_counts[name]]
    if empty:
        return TaskChange(TaskState.BROKEN, f"input dataset {empty[0]} has no files")
    total = sum(file_counts[name] for name in input_datasets)
    return TaskChange(TaskState.DEFINED, f"refined: {total} input file(s) in {len(input_datasets)} dataset(s)")


@dataclass(frozen=True, slots=True)
class Feeding:
    chunks: list[Chunk]
    change: TaskChange


def feed(input_datasets: list[str], files: list[tuple[str, InputFile]], rule: SplitRule) -> Feeding:
    """The task's input files, (dataset name, file) pairs, cut into chunks by the split rule:
    files in the order of their datasets in the task, then of registration (file id). READY,
    or BROKEN when the rule cannot cut them, or is not one the contract allows (a task stored
    before its rules were checked: NaN gigabytes, say)."""
    try:
        contract.check_split_rule(rule.kind, rule.value, "split_rule")
    except Violation as violation:
        return Feeding([], TaskChange(TaskState.BROKEN, f"the task's split rule cannot be used: {violation}"))
    order = {name: index for index, name in enumerate(input_datasets)}
    inputs = [f for _, f in sorted(files, key=lambda pair: (order[pair[0]], pair[1].file_id))]
    try:
        chunks = split(inputs, rule)
    except SplitError as error:
        return Feeding([], TaskChange(TaskState.BROKEN, str(error)))
    return Feeding(chunks, TaskChange(
        TaskState.READY,
        f"{len(inputs)} file(s) split into {len(chunks)} chunk(s) for {group_count(chunks)} job(s), "
        f"{rule.describe()}"))


def retry(chunks_again: int) -> TaskChange:
    """A retried task is READY with its failure counters reset (chunks_again: the chunks that
    run again, chunks.RUN_AGAIN_ON_RETRY)."""
    return TaskChange(TaskState.READY, f"retry: {chunks_again} chunk(s) to run again", jobs_finished=0,
                      jobs_failed=0, wait_until=None)
