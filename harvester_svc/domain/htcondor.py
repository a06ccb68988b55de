"""HTCondor's side of a worker, as rules: a queue's HTCondor parameters, the submit description
of one worker (plain submit-language commands), the constraint that finds workers back, and
what a job ad says of its worker. No I/O; the plugin (logic/plugins/htcondor.py) turns these
into the bindings' own objects and calls the schedd.

A worker's job carries two custom attributes, as PanDA's Harvester sets them: `harvesterID`
(which harvester instance submitted it) and `harvesterWorkerID` (the worker's id, a string), so a
harvester finds its jobs in a schedd shared with others, by worker, even the ones whose
submission it never recorded."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum

import classad2

from harvester_svc.domain.workers import BatchReport, WorkerSpec, WorkerState

__all__ = [
    "INSTANCE_ATTRIBUTE", "JOB_AD_PROJECTION", "WORKER_ATTRIBUTE", "HTCondorQueueConfig", "JobStatus",
    "SubmitDescriptionError", "batch_id_of", "classad_string", "report_from_job_ad", "submit_commands",
    "workers_constraint",
]

WORKER_ATTRIBUTE = "harvesterWorkerID"
INSTANCE_ATTRIBUTE = "harvesterID"
# What the plugin asks the schedd for, and nothing more: a job ad holds some hundred attributes.
JOB_AD_PROJECTION = (
    "ClusterId", "ProcId", "JobStatus", "LastJobStatus", "ExitCode", "ExitBySignal", "ExitSignal", "HoldReason",
    "RemoveReason", "RemoteHost", "LastRemoteHost", "JobStartDate", "CompletionDate", "EnteredCurrentStatus",
    WORKER_ATTRIBUTE, INSTANCE_ATTRIBUTE,
)


class JobStatus(IntEnum):
    """HTCondor's JobStatus attribute."""

    IDLE = 1
    RUNNING = 2
    REMOVED = 3
    COMPLETED = 4
    HELD = 5
    TRANSFERRING_OUTPUT = 6
    SUSPENDED = 7


class SubmitDescriptionError(ValueError):
    """A worker or a queue configuration the submit language cannot carry; the message says why."""


@dataclass(frozen=True, slots=True)
class HTCondorQueueConfig:
    """A queue's HTCondor parameters (`WorkerSpec.parameters`): which schedd, and any submit
    commands of the site's own (`requirements`, `accounting_group`, `+ProjectName`…), which
    come after the plugin's and so may replace them."""

    # The central manager to ask for the schedd (host[:port]); empty: this machine's configuration.
    pool: str = ""
    # The schedd's name in that pool; empty: the pool's (or this machine's) local schedd.
    schedd: str = ""
    extra_commands: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object]) -> HTCondorQueueConfig:
        pool = parameters.get("pool", "")
        schedd = parameters.get("schedd", "")
        extra = parameters.get("submit_commands", {})
        if not isinstance(pool, str) or not isinstance(schedd, str):
            raise SubmitDescriptionError("pool and schedd must be strings")
        if not isinstance(extra, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str | int) for key, value in extra.items()
        ):
            raise SubmitDescriptionError("submit_commands must map command names to strings")
        commands = {key: str(value) for key, value in extra.items()}
        for key, value in commands.items():
            _check_line(f"submit_commands[{key}]", key)
            _check_line(f"submit_commands[{key}]", value)
        return cls(pool=pool, schedd=schedd, extra_commands=commands)

    @property
    def schedd_key(self) -> tuple[str, str]:
        """Workers with the same key are served by the same schedd."""
        return (self.pool, self.schedd)


def submit_commands(worker: WorkerSpec, executable: str, instance: str,
                    config: HTCondorQueueConfig) -> dict[str, str]:
    """The submit description of one worker, command by command, as `condor_submit` reads them.

    The executable must already be an absolute path (HTCondor reads a relative one against
    `initialdir`, the access point). Its batch files (`pilot.out`, `pilot.err`, `condor.log`)
    go in the access point, beside the pilot's own. The walltime is enforced by the schedd
    (`periodic_remove` of a job running longer), as Harvester's submit templates do."""
    if not worker.pilot_command:
        raise SubmitDescriptionError("the pilot command is empty")
    if not executable.startswith("/"):
        raise SubmitDescriptionError(f"the executable {executable!r} is not an absolute path")
    _check_line("executable", executable)
    if any(character.isspace() for character in executable):
        raise SubmitDescriptionError(f"the executable {executable!r} holds white space, which HTCondor cannot take")
    _check_line("access point", worker.access_point)
    access_point = worker.access_point.rstrip("/") or "/"
    commands = {
        "universe": "vanilla",
        "executable": executable,
        # The pilot is installed where it runs (or on a shared file system), never copied with the job.
        "transfer_executable": "false",
        "arguments": quoted_arguments(worker.pilot_command[1:]),
        "environment": quoted_environment(worker.environment),
        "initialdir": access_point,
        "output": f"{access_point}/pilot.out",
        "error": f"{access_point}/pilot.err",
        "log": f"{access_point}/condor.log",
        "request_cpus": str(max(worker.cores, 1)),
        # In MB, the submit language's default unit.
        "request_memory": str(max(worker.memory_mb, 1)),
        f"+{INSTANCE_ATTRIBUTE}": classad_string(instance),
        f"+{WORKER_ATTRIBUTE}": classad_string(worker.worker_id),
    }
    if worker.walltime_seconds > 0:
        commands["periodic_remove"] = (
            f"JobStatus == {JobStatus.RUNNING} && time() - EnteredCurrentStatus > {worker.walltime_seconds}"
        )
    commands.update(config.extra_commands)
    return commands


def quoted_arguments(arguments: Iterable[str]) -> str:
    """Arguments in the submit language's "new" syntax: the whole in double quotes (a double
    quote inside doubled), each argument in single quotes (a single quote inside doubled), so
    white space and quotes reach the pilot as they are."""
    parts = []
    for argument in arguments:
        _check_value("argument", argument)
        parts.append("'" + argument.replace("'", "''") + "'")
    return '"' + " ".join(parts).replace('"', '""') + '"'


def quoted_environment(environment: Mapping[str, str]) -> str:
    """The environment in the same "new" syntax: `"'NAME=value' ..."`."""
    parts = []
    for name, value in environment.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SubmitDescriptionError(f"the environment variable name {name!r} is not one HTCondor takes")
        _check_value(f"environment variable {name}", value)
        parts.append("'" + f"{name}={value}".replace("'", "''") + "'")
    return '"' + " ".join(parts).replace('"', '""') + '"'


def classad_string(text: str) -> str:
    """A ClassAd string literal, for a submit description: quoted by the ClassAd library, and
    free of what the submit language itself would read (a line break, a `$`)."""
    _check_value("string", text)
    return str(classad2.quote(text))


def _check_line(what: str, text: str) -> None:
    if "\n" in text or "\r" in text or "\0" in text:
        raise SubmitDescriptionError(f"the {what} holds a line break or NUL, which a submit description cannot take")


def _check_value(what: str, text: str) -> None:
    _check_line(what, text)
    # The submit language expands `$(…)` macros, `$$(…)` attributes of the machine and `$ENV(…)`
    # functions in every value, and it has no escape that survives every neighbour (`$(DOLLAR)`
    # is itself expanded again), so a `$` is refused rather than risk a changed command.
    if "$" in text:
        raise SubmitDescriptionError(f"the {what} holds '$', which HTCondor's submit language would expand")


def workers_constraint(instance: str, worker_ids: Iterable[str]) -> str:
    """The jobs of these workers, of this harvester instance, in a schedd's queue or history.

    Every id is a string literal quoted by the ClassAd library, so no id (a quote or a backslash
    in it included) can end its literal early and widen the constraint. `identicalMember`
    compares as `=?=` does, case and all; `member` would compare as `==`, which ignores case."""
    ids = ", ".join(classad2.quote(worker_id) for worker_id in sorted(set(worker_ids)))
    return (f"{INSTANCE_ATTRIBUTE} =?= {classad2.quote(instance)}"
            f" && identicalMember({WORKER_ATTRIBUTE}, {{{ids}}})")


def batch_id_of(ad: Mapping[str, object]) -> str:
    """HTCondor's job id, `cluster.proc`."""
    return f"{_integer(ad.get('ClusterId'))}.{_integer(ad.get('ProcId')) or 0}"


def report_from_job_ad(worker_id: str, ad: Mapping[str, object]) -> BatchReport:
    """What a job ad (from the queue or the history) says of its worker.

    Idle → submitted; running or transferring its output → running; suspended → idle (it holds
    its slot but its pilot is stopped); removed → cancelled; held → failed with the hold reason
    (the plugin removes held jobs, as Harvester does, since a held pilot never resumes by itself);
    completed → finished when its exit code is 0, else failed (Harvester's rule, a missing exit
    code included: a pilot killed by a signal has none)."""
    status = _integer(ad.get("JobStatus"))
    last_status = _integer(ad.get("LastJobStatus"))
    # A job removed after it completed (`condor_rm` of a job left in the queue) completed.
    if status == JobStatus.REMOVED and last_status == JobStatus.COMPLETED:
        status = JobStatus.COMPLETED
    node = _node(ad)
    start_time = _timestamp(ad.get("JobStartDate"))
    ended_at = _timestamp(ad.get("CompletionDate")) or _timestamp(ad.get("EnteredCurrentStatus"))
    exit_code = _integer(ad.get("ExitCode"))

    def report(state: WorkerState, error: str = "", *, ended: bool = False) -> BatchReport:
        return BatchReport(worker_id=worker_id, state=state, node=node, error=error,
                           exit_code=exit_code if ended else None, start_time=start_time,
                           end_time=ended_at if ended else None)

    match status:
        case JobStatus.IDLE:
            return report(WorkerState.SUBMITTED)
        case JobStatus.RUNNING | JobStatus.TRANSFERRING_OUTPUT:
            return report(WorkerState.RUNNING)
        case JobStatus.SUSPENDED:
            return report(WorkerState.IDLE)
        case JobStatus.REMOVED:
            reason = _text(ad.get("RemoveReason"))
            return report(WorkerState.CANCELLED, f"removed: {reason}" if reason else "removed", ended=True)
        case JobStatus.HELD:
            reason = _text(ad.get("HoldReason"))
            return report(WorkerState.FAILED, f"held: {reason}" if reason else "held", ended=True)
        case JobStatus.COMPLETED:
            if exit_code == 0:
                return report(WorkerState.FINISHED, ended=True)
            if exit_code is not None:
                return report(WorkerState.FAILED, f"the pilot exited with code {exit_code}", ended=True)
            signal = _integer(ad.get("ExitSignal"))
            if ad.get("ExitBySignal") is True and signal is not None:
                return report(WorkerState.FAILED, f"the pilot was killed by signal {signal}", ended=True)
            return report(WorkerState.FAILED, "the job completed without an exit code", ended=True)
        case _:
            return report(WorkerState.FAILED, f"unknown JobStatus {ad.get('JobStatus')!r}", ended=True)


def _integer(value: object) -> int | None:
    # A ClassAd gives literals as Python values; an expression or UNDEFINED counts as absent.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _timestamp(value: object) -> datetime | None:
    seconds = _integer(value)
    # HTCondor writes 0 for a time that has not come (CompletionDate of a job still queued).
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def _node(ad: Mapping[str, object]) -> str:
    """The execute machine: `RemoteHost` while it runs, `LastRemoteHost` after, without the slot."""
    host = _text(ad.get("RemoteHost")) or _text(ad.get("LastRemoteHost"))
    return host.rpartition("@")[2]
