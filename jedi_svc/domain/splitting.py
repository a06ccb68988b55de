"""Cutting a task's input files into chunks and chunks into jobs: by files, events or size.

A chunk is a whole file, or a range of its events. The first split gives every chunk a
group (the job it goes to); chunks that are retried later run one per job, so a bad input
does not doom its neighbours a second time. No I/O."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GIGABYTE", "Chunk", "InputFile", "SplitError", "SplitRule", "group_count", "split"]

GIGABYTE = 10**9


class SplitError(ValueError):
    """The inputs cannot be split by this rule (e.g. events splitting of files with no event count)."""


@dataclass(frozen=True)
class SplitRule:
    # "files", "events" or "size"
    kind: str
    value: float

    def describe(self) -> str:
        if self.kind == "files":
            return f"{int(self.value)} file(s) per job"
        if self.kind == "events":
            return f"{int(self.value)} events per job"
        return f"{self.value:g} GB per job"


@dataclass(frozen=True)
class InputFile:
    file_id: int
    lfn: str
    size_bytes: int
    events: int


@dataclass(frozen=True)
class Chunk:
    file_id: int
    # First event and number of events of the file this chunk covers; n_events 0 = the whole file.
    first_event: int
    n_events: int
    group: int


def split(files: list[InputFile], rule: SplitRule) -> list[Chunk]:
    """Chunks of `files`, in order, each with the group (job number, from 0) it goes to."""
    if rule.value <= 0:
        raise SplitError(f"split rule needs a positive value, got {rule.value:g}")
    if rule.kind == "files":
        per_job = int(rule.value)
        return [Chunk(f.file_id, 0, 0, index // per_job) for index, f in enumerate(files)]
    if rule.kind == "size":
        return _by_size(files, int(rule.value * GIGABYTE))
    if rule.kind == "events":
        return _by_events(files, int(rule.value))
    raise SplitError(f"unknown split rule {rule.kind!r}")


def _by_size(files: list[InputFile], limit: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    group, used = 0, 0
    for f in files:
        if used and used + f.size_bytes > limit:
            group, used = group + 1, 0
        chunks.append(Chunk(f.file_id, 0, 0, group))
        used += f.size_bytes
    return chunks


def _by_events(files: list[InputFile], per_job: int) -> list[Chunk]:
    missing = [f.lfn for f in files if f.events <= 0]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise SplitError(f"events splitting needs the number of events of every file; "
                         f"{len(missing)} file(s) have none: {shown}")
    chunks: list[Chunk] = []
    group, room = 0, per_job
    for f in files:
        first = 0
        while first < f.events:
            take = min(room, f.events - first)
            whole = first == 0 and take == f.events
            chunks.append(Chunk(f.file_id, first, 0 if whole else take, group))
            first += take
            room -= take
            if room == 0:
                group, room = group + 1, per_job
    return chunks


def group_count(chunks: list[Chunk]) -> int:
    return len({c.group for c in chunks})
