"""What the user types -> request messages: job specs from flags or YAML, durations, list filters.

Nothing here talks to a server, so all of it is unit-tested directly.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2
from panda_runtime.contracts import Violation
from panda_runtime.contracts import server as server_contract

from .output import parse_enum

__all__ = [
    "JOB_KEYS", "JobSpec", "SpecError", "build_job_filter", "check_job", "job_from_flags", "jobs_from_yaml",
    "parse_duration", "parse_env", "parse_since", "quote_filter_string", "rfc3339",
]


class SpecError(ValueError):
    """A job description, duration or filter the user has to fix; the message says where."""


# --- durations and times -----------------------------------------------------------------

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str | int | float) -> int:
    """Seconds from `3600`, `90m`, `1h30m`, `2d`. Plain numbers are seconds."""
    if isinstance(text, bool):
        raise SpecError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", value):
            seconds = float(value)
        elif _DURATION.fullmatch(value):
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
        else:
            raise SpecError(f"not a duration: {text!r} (use seconds, or e.g. 30m, 1h, 2d, 1h30m)")
    if seconds < 0:
        raise SpecError(f"duration must not be negative: {text!r}")
    return int(seconds)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A point in time from `1h`/`30m`/`2d` (that long ago) or an ISO date/time.

    ISO values without a zone are local time, as a person at the terminal means them."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if _DURATION.fullmatch(value.lower()):
        return now - timedelta(seconds=parse_duration(value))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SpecError(
            f"--since {text!r}: use a duration such as 30m, 1h, 2d, or an ISO time such as "
            "2026-01-31 or 2026-01-31T08:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # naive -> the machine's local zone
    return parsed.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- list filter -------------------------------------------------------------------------


def quote_filter_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_job_filter(
    *,
    state: str | None = None,
    queue: str | None = None,
    task_id: int | None = None,
    owner: str | None = None,
    since: datetime | None = None,
) -> str:
    """The ListJobs filter (AIP-160 conjunction) for `panda jobs` flags.

    `--since` compares update_time, so it finds jobs created *or changed* since then:
    what someone following their work wants to see."""
    terms: list[str] = []
    if state:
        try:
            number = parse_enum(state, job_pb2.Job.State, "STATE_", "state")
        except ValueError as exc:
            raise SpecError(str(exc)) from None
        terms.append(f"state = {job_pb2.Job.State.Name(number).removeprefix('STATE_')}")
    if queue:
        terms.append(f"queue = {quote_filter_string(queue)}")
    if task_id is not None:
        terms.append(f"task_id = {int(task_id)}")
    if owner:
        terms.append(f"owner = {quote_filter_string(owner)}")
    if since is not None:
        terms.append(f"update_time >= {quote_filter_string(rfc3339(since))}")
    return " AND ".join(terms)


# --- job specs ---------------------------------------------------------------------------


@dataclass
class JobSpec:
    """One job as the user describes it, before it becomes a Job message."""

    queue: str
    command: list[str]
    inputs: list[job_pb2.JobFile]
    outputs: list[job_pb2.JobFile]
    cores: int = 0
    memory_mb: int = 0
    walltime_seconds: int = 0
    priority: int = 0
    max_attempts: int = 0
    label: str = ""
    env: dict[str, str] | None = None

    def to_job(self) -> job_pb2.Job:
        # Zeros stay unset: the server fills in its defaults for anything not stated.
        job = job_pb2.Job(
            queue=self.queue,
            command=self.command,
            priority=self.priority,
            max_attempts=self.max_attempts,
            label=self.label,
            resources=resources_pb2.Resources(
                cores=self.cores, memory_mb=self.memory_mb, walltime_seconds=self.walltime_seconds
            ),
        )
        job.environment.update(self.env or {})
        job.files.extend(self.inputs)
        job.files.extend(self.outputs)
        return job


_KIND_NAMES = {job_pb2.JobFile.KIND_INPUT: "input", job_pb2.JobFile.KIND_OUTPUT: "output",
               job_pb2.JobFile.KIND_LOG: "log"}


def check_job(job: job_pb2.Job, where: str) -> job_pb2.Job:
    """What the server would refuse of `job` (panda_runtime.contracts), said before sending."""
    fields = server_contract.JobFields(
        queue=job.queue, command=list(job.command), environment=dict(job.environment), label=job.label,
        task_id=job.task_id, priority=job.priority, max_attempts=job.max_attempts, cores=job.resources.cores,
        memory_mb=job.resources.memory_mb, walltime_seconds=job.resources.walltime_seconds,
        disk_mb=job.resources.disk_mb,
        files=[server_contract.JobFileFields(f.lfn, _KIND_NAMES.get(f.kind, ""), f.size_bytes, f.adler32,
                                             f.storage_element) for f in job.files],
    )
    try:
        server_contract.check_job(fields, "job")
    except Violation as violation:
        field = violation.field.removeprefix("job.")
        raise SpecError(f"{where}{field}: {violation.description}") from None
    return job


def parse_env(items: Iterable[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def job_from_flags(
    *,
    queue: str | None,
    command: Sequence[str],
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    cores: int | None = None,
    memory: int | None = None,
    walltime: str | int | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
    label: str | None = None,
    env: Sequence[str] = (),
) -> job_pb2.Job:
    if not queue:
        raise SpecError("--queue is required")
    args = list(command)
    if args and args[0] == "--":  # argparse.REMAINDER keeps the separator
        args = args[1:]
    if not args:
        raise SpecError("no command given: put it after `--`, e.g. panda submit --queue local -- echo hi")
    job = _to_spec(
        {
            "queue": queue,
            "command": args,
            "inputs": list(inputs),
            "outputs": list(outputs),
            "cores": cores,
            "memory": memory,
            "walltime": walltime,
            "priority": priority,
            "max_attempts": max_attempts,
            "label": label,
            "env": parse_env(env),
        },
        where="",
    ).to_job()
    return check_job(job, "")


JOB_KEYS = (
    "queue",
    "command",
    "inputs",
    "outputs",
    "cores",
    "memory",
    "walltime",
    "priority",
    "max_attempts",
    "label",
    "env",
)


def jobs_from_yaml(
    text: str, *, source: str = "jobs file", defaults: Mapping[str, Any] | None = None
) -> list[job_pb2.Job]:
    """Jobs from YAML: a list of jobs, or a mapping with a `jobs` list.

    `defaults` (from command-line flags) fill keys a job leaves out. Every job is checked
    before any is returned, so a bad file submits nothing."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{source}: not valid YAML{where}: {problem}") from None
    if isinstance(document, Mapping):
        unknown = sorted(set(map(str, document)) - {"jobs"})
        if unknown:
            raise SpecError(f"{source}: unknown top-level key(s) {', '.join(unknown)} (expected `jobs`)")
        document = document.get("jobs")
    if document is None:
        raise SpecError(f"{source}: no jobs (expected a list of jobs, or `jobs: [...]`)")
    if not isinstance(document, list):
        raise SpecError(f"{source}: expected a list of jobs, or `jobs: [...]`")
    if not document:
        raise SpecError(f"{source}: the list of jobs is empty")
    jobs = []
    for index, entry in enumerate(document, start=1):
        where = f"{source}: job {index}: "
        if not isinstance(entry, Mapping):
            raise SpecError(f"{where}expected a mapping with keys such as queue and command")
        merged = {k: v for k, v in (defaults or {}).items() if v is not None}
        merged.update(entry)
        jobs.append(check_job(_to_spec(merged, where=where).to_job(), where))
    return jobs


def _to_spec(raw: Mapping[str, Any], *, where: str) -> JobSpec:
    unknown = sorted(set(map(str, raw)) - set(JOB_KEYS))
    if unknown:
        raise SpecError(f"{where}unknown key(s) {', '.join(unknown)} (known: {', '.join(JOB_KEYS)})")

    queue = raw.get("queue")
    if not isinstance(queue, str) or not queue.strip():
        raise SpecError(f"{where}`queue` is required (a queue name)")

    command = raw.get("command")
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise SpecError(f"{where}`command`: {exc}") from None
    if not isinstance(command, list) or not command:
        raise SpecError(f"{where}`command` is required (a list, or a string split like a shell would)")
    if not all(isinstance(a, str | int | float) and not isinstance(a, bool) for a in command):
        raise SpecError(f"{where}`command` must be a list of strings")

    env = raw.get("env") or {}
    if isinstance(env, list):
        try:
            env = parse_env(str(e) for e in env)
        except SpecError as exc:
            raise SpecError(f"{where}`env`: {exc}") from None
    if not isinstance(env, Mapping):
        raise SpecError(f"{where}`env` must be a mapping of names to values, or a list of KEY=VALUE")

    walltime = raw.get("walltime")
    try:
        walltime_seconds = parse_duration(walltime) if walltime not in (None, "") else 0
    except SpecError as exc:
        raise SpecError(f"{where}`walltime`: {exc}") from None

    return JobSpec(
        queue=queue.strip(),
        command=[str(a) for a in command],
        inputs=_files(raw.get("inputs"), job_pb2.JobFile.KIND_INPUT, f"{where}`inputs`"),
        outputs=_files(raw.get("outputs"), job_pb2.JobFile.KIND_OUTPUT, f"{where}`outputs`"),
        cores=_int(raw.get("cores"), f"{where}`cores`", minimum=1),
        memory_mb=_int(raw.get("memory"), f"{where}`memory` (MB)", minimum=1),
        walltime_seconds=walltime_seconds,
        priority=_int(raw.get("priority"), f"{where}`priority`", minimum=None),
        max_attempts=_int(raw.get("max_attempts"), f"{where}`max_attempts`", minimum=1),
        label=str(raw.get("label") or ""),
        env={str(k): "" if v is None else str(v) for k, v in env.items()},
    )


def _int(value: Any, what: str, *, minimum: int | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SpecError(f"{what} must be a whole number, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SpecError(f"{what} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise SpecError(f"{what} must be at least {minimum}, not {number}")
    return number


_FILE_KEYS = {"lfn", "scope", "size_bytes", "adler32", "storage_element"}


def _files(value: Any, kind: job_pb2.JobFile.Kind.ValueType, what: str) -> list[job_pb2.JobFile]:
    """File names, or mappings {lfn, scope, size_bytes, adler32, storage_element} for inputs of
    another scope or that the pilot should verify, or outputs bound for another storage element
    or scope."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(f"{what} must be a list of file names")
    files = []
    for item in value:
        if isinstance(item, str):
            if not item.strip():
                raise SpecError(f"{what}: empty file name")
            files.append(job_pb2.JobFile(lfn=item.strip(), kind=kind))
            continue
        if not isinstance(item, Mapping):
            raise SpecError(f"{what}: expected a file name or a mapping with `lfn`, not {item!r}")
        unknown = sorted(set(map(str, item)) - _FILE_KEYS)
        if unknown:
            raise SpecError(f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_FILE_KEYS))})")
        lfn = item.get("lfn")
        if not isinstance(lfn, str) or not lfn.strip():
            raise SpecError(f"{what}: every file needs an `lfn`")
        adler32 = str(item.get("adler32") or "").lower()
        if adler32 and not re.fullmatch(r"[0-9a-f]{1,8}", adler32):
            raise SpecError(f"{what}: {lfn}: adler32 must be hex digits, not {item.get('adler32')!r}")
        files.append(
            job_pb2.JobFile(
                lfn=lfn.strip(),
                kind=kind,
                size_bytes=_int(item.get("size_bytes"), f"{what}: {lfn}: size_bytes", minimum=0),
                adler32=adler32.zfill(8) if adler32 else "",
                storage_element=str(item.get("storage_element") or ""),
                scope=str(item.get("scope") or ""),
            )
        )
    return files
