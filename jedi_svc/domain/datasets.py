"""Datasets' files: one to register (and what it must be: its scope, its replicas), and one as
stored. No I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from panda_runtime.contracts import Violation
from panda_runtime.contracts import jedi as contract
from panda_runtime.contracts.server import STORAGE_ELEMENT_ID
from panda_runtime.service.errors import InvalidArgument
from panda_runtime.service.scopes import check_scope, check_writable

__all__ = [
    "MAX_FILES", "DatasetFile", "FileSpec", "assign_scopes", "check_files", "check_replicas",
]

ADLER32 = re.compile(r"^[0-9a-f]{8}$")
# Files of one dataset registered at once, at most.
MAX_FILES = contract.MAX_DATASET_FILES


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file of a dataset being registered."""

    lfn: str
    size_bytes: int
    adler32: str
    events: int
    storage_elements: list[str]
    scope: str = ""  # empty: the dataset's


def check_files(specs: list[FileSpec]) -> list[FileSpec]:
    """The files of a dataset to register, as they are stored: INVALID_ARGUMENT naming the
    first file at fault (at least one file, at most MAX_FILES; logical file names the server
    takes as jobs' inputs (contracts.jedi.check_dataset_file), not starting with '.', each
    once; no negative size or events; an adler32 of 8 hex digits, leading zeros added; at
    least one storage element, by its configured id)."""
    if not specs:
        raise InvalidArgument("a dataset needs at least one file", field="files")
    if len(specs) > MAX_FILES:
        raise InvalidArgument(f"at most {MAX_FILES} files per dataset", field="files")
    seen: set[str] = set()
    checked: list[FileSpec] = []
    for index, f in enumerate(specs):
        where = f"files[{index}]"
        lfn = f.lfn
        elements = [se.strip() for se in f.storage_elements if se.strip()]
        if not elements:
            raise InvalidArgument(f"{where}: at least one storage element holding the file is required",
                                  field=f"{where}.storage_elements")
        for se in elements:
            if not STORAGE_ELEMENT_ID.fullmatch(se):
                hint = " (name it by its configured id, not a URL)" if "://" in se or se.startswith("/") else ""
                raise InvalidArgument(f"{where}: {se[:80]!r} is not a storage element id{hint}",
                                      field=f"{where}.storage_elements")
        try:
            if lfn.startswith("."):
                raise Violation(f"{where}.lfn", "starts with '.'")
            contract.check_dataset_file(lfn, f.size_bytes, f.events, elements, where)
        except Violation as violation:
            if violation.field == f"{where}.lfn":
                raise InvalidArgument(
                    f"{where}: {lfn[:80]!r} is not a logical file name (1-255 letters, digits and _.-+:=,@%, "
                    "not starting with '.')", field=violation.field) from None
            raise InvalidArgument.of(violation) from None
        if lfn in seen:
            raise InvalidArgument(f"{where}: {lfn} is listed twice", field=f"{where}.lfn")
        seen.add(lfn)
        adler32 = f.adler32.strip().lower()
        if adler32 and len(adler32) < 8:
            adler32 = adler32.zfill(8)
        if not ADLER32.match(adler32):
            raise InvalidArgument(f"{where}: adler32 {f.adler32!r} is not 8 hex digits", field=f"{where}.adler32")
        checked.append(replace(f, adler32=adler32, storage_elements=list(dict.fromkeys(elements))))
    return checked


def assign_scopes(specs: list[FileSpec], dataset_scope: str, writable: frozenset[str], owner: str) -> list[FileSpec]:
    """The files, each in a scope (empty: the dataset's), well formed (INVALID_ARGUMENT) and one
    the owner may write (PERMISSION_DENIED): registering a file claims its name. Errors name
    the file's field."""
    scoped = []
    for index, f in enumerate(specs):
        field = f"files[{index}].scope"
        scope = check_scope(f.scope.strip() or dataset_scope, field)
        check_writable(scope, writable, owner, field)
        scoped.append(replace(f, scope=scope))
    return scoped


def check_replicas(specs: list[FileSpec], configured: Iterable[str]) -> None:
    """Every replica is on a storage element the server has configured (`configured`: their
    ids), else INVALID_ARGUMENT naming the first file at fault."""
    known = set(configured)
    for index, f in enumerate(specs):
        unknown = [se for se in f.storage_elements if se not in known]
        if unknown:
            raise InvalidArgument(
                f"files[{index}]: storage element {unknown[0]} is not configured at the server (see `panda se list`)",
                field=f"files[{index}].storage_elements")


@dataclass(slots=True)
class DatasetFile:
    """A file of a dataset: an input as registered, or an output a job made (job_id)."""

    file_id: int
    dataset_id: int
    scope: str
    lfn: str
    size_bytes: int
    adler32: str
    events: int
    storage_elements: list[str]
    job_id: int
    create_time: datetime
