"""Whose names a submission's files take: each file's scope (the owner's by default), that its
outputs are written only in scopes its owner may write, and that no output name, (scope, lfn),
is taken twice: a registered file is never overwritten, and a name another job may still produce
is not given to a second one. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from panda_runtime.service.errors import AlreadyExists
from panda_runtime.service.scopes import check_scope, check_writable
from server_svc.domain.job_specs import JobSpec
from server_svc.domain.states import JobState

__all__ = ["NAME_FREEING_STATES", "OutputName", "assign_scopes", "check_names_free", "output_names"]

# (scope, lfn): a file's identity.
OutputName = tuple[str, str]
# A job that ended in one of these (its last attempt failed, or it was cancelled or closed) gives
# back the names of the outputs it did not register.
NAME_FREEING_STATES = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.CLOSED})


def assign_scopes(specs: Sequence[JobSpec], default_scope: str, writable: frozenset[str], owner: str) -> None:
    """Give every file without a scope `default_scope` (the owner's), then check each: a well
    formed scope (INVALID_ARGUMENT), and for outputs and logs one of `writable`
    (PERMISSION_DENIED); inputs may be read from any scope. Each error names the file's field."""
    for i, spec in enumerate(specs):
        for j, file in enumerate(spec.files):
            field = f"jobs[{i}].files[{j}].scope"
            file.scope = check_scope(file.scope or default_scope, field)
            if file.kind != "input":
                check_writable(file.scope, writable, owner, field)


def output_names(specs: Sequence[JobSpec]) -> dict[OutputName, str]:
    """Every output and log name of the batch, with the field that declares it; ALREADY_EXISTS
    when two files of the batch would write the same one."""
    names: dict[OutputName, str] = {}
    for i, spec in enumerate(specs):
        for j, file in enumerate(spec.files):
            if file.kind == "input":
                continue
            name, field = (file.scope, file.lfn), f"jobs[{i}].files[{j}].lfn"
            if name in names:
                raise AlreadyExists(f"{field}: {file.scope}:{file.lfn} is also written by {names[name]}")
            names[name] = field
    return names


def check_names_free(names: Mapping[OutputName, str], taken: Iterable[tuple[OutputName, int]]) -> None:
    """ALREADY_EXISTS naming the first field whose name is `taken` ((name, job id): registered,
    or declared by a job that may still produce it)."""
    by_name = dict(taken)
    for name, field in names.items():
        if name in by_name:
            scope, lfn = name
            raise AlreadyExists(
                f"{field}: {scope}:{lfn} is already registered or about to be, by job {by_name[name]}; a file is never "
                "overwritten: choose another name"
            )
