"""A task's progress in files, from the states of its chunks. No I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = [
    "CANCELLED", "CHUNK_STATUSES", "FAILED", "FILE_STATUS_PRECEDENCE", "FINISHED", "READY", "RUNNING", "Progress",
    "file_status", "final_state",
]

# A chunk's status in the task.
READY, RUNNING, FINISHED, FAILED, CANCELLED = "ready", "running", "finished", "failed", "cancelled"
CHUNK_STATUSES = (READY, RUNNING, FINISHED, FAILED, CANCELLED)


# A file whose chunks are not all finished takes the first of these its chunks have.
FILE_STATUS_PRECEDENCE = (RUNNING, READY, FAILED, CANCELLED)


def file_status(chunk_statuses: Iterable[str]) -> str:
    """One file's status from its chunks': finished when all are; otherwise the most pressing
    of running, ready, failed, cancelled."""
    found = set(chunk_statuses)
    if found == {FINISHED}:
        return FINISHED
    for status in FILE_STATUS_PRECEDENCE:
        if status in found:
            return status
    return READY


@dataclass
class Progress:
    files_total: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHUNK_STATUSES, 0))

    @classmethod
    def of(cls, chunks: Iterable[tuple[int, str]]) -> Progress:
        """From (file_id, status) pairs."""
        per_file: dict[int, list[str]] = {}
        for file_id, status in chunks:
            per_file.setdefault(file_id, []).append(status)
        progress = cls(files_total=len(per_file))
        for statuses in per_file.values():
            progress.by_status[file_status(statuses)] += 1
        return progress

    @classmethod
    def from_counts(cls, files_by_status: dict[str, int]) -> Progress:
        """From the number of files in each status (as the task store counts them)."""
        progress = cls(files_total=sum(files_by_status.values()))
        for status, count in files_by_status.items():
            progress.by_status[status] += count
        return progress


def final_state(finished_chunks: int, total_chunks: int) -> str:
    """done when every chunk was processed, finished when some were, failed when none."""
    if total_chunks and finished_chunks == total_chunks:
        return "done"
    return "finished" if finished_chunks else "failed"
