"""Datasets' files: one to register, and one as stored. No I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

__all__ = ["DatasetFile", "FileSpec"]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file of a dataset being registered."""

    lfn: str
    size_bytes: int
    adler32: str
    events: int
    storage_elements: list[str]


@dataclass(slots=True)
class DatasetFile:
    """A file of a dataset: an input as registered, or an output a job made (job_id)."""

    file_id: int
    dataset_id: int
    lfn: str
    size_bytes: int
    adler32: str
    events: int
    storage_elements: list[str]
    job_id: int
    create_time: datetime
