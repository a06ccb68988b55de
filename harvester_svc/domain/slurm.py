"""Slurm's rules for harvester: the batch script a worker is submitted with, what Slurm's states
mean for a worker, and how to read what `sbatch`, `squeue` and `sacct` print. No I/O: the plugin
(`harvester_svc.logic.plugins.slurm`) runs the commands and hands their output here.

The batch script is a template with placeholders in braces, named as Harvester's Slurm submitter
names them where it has a name (`{nCorePerNode}`, `{requestRam}`, `{requestWalltime}`, ...), and
filled with Python's `str.format` rules: `{{` and `}}` are literal braces, so a shell's `${VAR}`
is written `${{VAR}}`. A placeholder no worker fills is an error when the queue configuration is
loaded (`check_template`), not a surprise in a worker's script."""

from __future__ import annotations

import math
import re
import shlex
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from harvester_svc.domain.workers import BatchReport, WorkerSpec, WorkerState

__all__ = [
    "BATCH_SCRIPT_NAME", "DEFAULT_TEMPLATE", "PARAMETERS", "PLACEHOLDERS", "SACCT_FIELDS", "SLURM_TIME_FORMAT",
    "SQUEUE_FIELDS", "SQUEUE_FORMAT", "SlurmJob", "SlurmParameters", "batch_report", "check_template",
    "is_batch_id", "output_file_name", "parse_parameters", "parse_sacct", "parse_sbatch", "parse_squeue",
    "placeholder_values", "render_batch_script", "worker_state",
]

# The batch script's name in the worker's access point.
BATCH_SCRIPT_NAME = "slurm-batch.sh"


def output_file_name(batch_id: str) -> str:
    """Slurm's default output file (stdout and stderr of the batch script), in the job's working
    directory, which the plugin makes the access point (`sbatch --chdir`)."""
    return f"slurm-{batch_id}.out"


# The plugin's parameters in a queue's configuration (`submitter`), and what each is.
PARAMETERS: Mapping[str, str] = {
    "partition": "the Slurm partition (sbatch --partition); the cluster's default partition when not given",
    "template_file": "a batch script template of the queue's own (its path on harvester's machine); "
                     "the default template when not given",
    "sbatch_args": "more sbatch options, a list of strings (e.g. [\"--account=atlas\", \"--qos=short\"])",
}


@dataclass(frozen=True, slots=True)
class SlurmParameters:
    partition: str = ""
    template_file: str = ""
    sbatch_args: tuple[str, ...] = ()


def parse_parameters(parameters: Mapping[str, object]) -> SlurmParameters:
    """The plugin's parameters from a queue's configuration; ValueError naming every bad one."""
    problems = [f"{name}: unknown parameter (known: {', '.join(PARAMETERS)})"
                for name in parameters if name not in PARAMETERS]
    partition = parameters.get("partition", "")
    template_file = parameters.get("template_file", "")
    sbatch_args = parameters.get("sbatch_args", ())
    if not isinstance(partition, str):
        problems.append("partition: must be a string")
        partition = ""
    if not isinstance(template_file, str):
        problems.append("template_file: must be a string")
        template_file = ""
    if not isinstance(sbatch_args, list | tuple) or not all(isinstance(arg, str) for arg in sbatch_args):
        problems.append("sbatch_args: must be a list of strings")
        sbatch_args = ()
    if problems:
        raise ValueError("; ".join(problems))
    return SlurmParameters(partition=partition, template_file=template_file,
                           sbatch_args=tuple(str(arg) for arg in sbatch_args))


# What each placeholder is, for the error message and the docs. Aliases carry Harvester's names.
PLACEHOLDERS: Mapping[str, str] = {
    "nCorePerNode": "cores of the worker (one node per worker)",
    "nCore": "cores of the worker",
    "nCoreTotal": "cores of the worker",
    "memoryMB": "memory of the worker in MB, at least 1 per core as in Harvester (0 would ask for the whole node)",
    "requestRam": "memory of the worker in MB, as memoryMB",
    "memoryDirective": "the line `#SBATCH --mem=<MB>`, or a comment when the worker asks for no memory "
                       "(the partition's default applies)",
    "walltime": "walltime of the worker in seconds",
    "requestWalltime": "walltime of the worker in seconds",
    "walltimeMinutes": "walltime in whole minutes, rounded up, at least 1 (sbatch --time=MINUTES)",
    "requestWalltimeMinute": "walltime in whole minutes, as walltimeMinutes",
    "accessPoint": "the worker's directory (as it is, not shell-quoted)",
    "workerID": "harvester's id of the worker",
    "queueName": "the PanDA queue the worker serves",
    "partition": "the Slurm partition of the queue",
    "pilotCommand": "the command that starts the pilot, shell-quoted",
    "environment": "one `export NAME=value` line (value shell-quoted) per variable of the worker",
}

# Resources as #SBATCH lines, then the pilot. The partition, the working directory (the access
# point, where Slurm writes slurm-<job id>.out) and sbatch_args come on sbatch's command line, so
# a template of a queue's own cannot lose them.
DEFAULT_TEMPLATE = """\
#!/bin/bash
#SBATCH --job-name=panda-worker-{workerID}
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={nCore}
{memoryDirective}
#SBATCH --time={walltimeMinutes}
# A PanDA pilot for queue {queueName}, harvester worker {workerID}, started in its access point.
{environment}
exec {pilotCommand}
"""

_SAMPLE_WORKER = WorkerSpec(worker_id="harvester-1", queue_id="queue", access_point="/access/point", cores=1,
                            memory_mb=2000, walltime_seconds=3600, pilot_command=("pilot",),
                            environment={"NAME": "value"})
_LITERAL_BRACE_HINT = "write {{ and }} for a literal brace (a shell's ${VAR} is ${{VAR}})"
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_template(text: str) -> None:
    """Raise ValueError, naming every unknown placeholder, if `text` is not a template every
    worker can be rendered with."""
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as error:  # an unmatched brace
        raise ValueError(f"batch script template: {error}; {_LITERAL_BRACE_HINT}") from None
    unknown: list[str] = []
    for _literal, name, format_spec, _conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            shown = "{" + name + "}"
            if shown not in unknown:
                unknown.append(shown)
        elif format_spec and "{" in format_spec:
            raise ValueError(f"batch script template: placeholder {{{name}}} has a placeholder in its format")
    if unknown:
        known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
        raise ValueError(
            f"batch script template: unknown placeholder{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {known}; {_LITERAL_BRACE_HINT}")
    # A format that does not fit its value (`{accessPoint:d}`) fails only when filled: fill it once.
    try:
        text.format_map(placeholder_values(_SAMPLE_WORKER, "partition"))
    except (ValueError, TypeError) as error:
        raise ValueError(f"batch script template: {error}") from None


def placeholder_values(spec: WorkerSpec, partition: str) -> dict[str, object]:
    """Each placeholder's value for one worker. Raises ValueError for an environment variable
    whose name a shell cannot export."""
    bad = [name for name in spec.environment if not _ENVIRONMENT_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"environment variable names a shell cannot export: {', '.join(map(repr, bad))}")
    memory_mb = max(spec.memory_mb, spec.cores)
    minutes = max(1, math.ceil(spec.walltime_seconds / 60))
    return {
        "nCorePerNode": spec.cores, "nCore": spec.cores, "nCoreTotal": spec.cores,
        "memoryMB": memory_mb, "requestRam": memory_mb,
        "memoryDirective": f"#SBATCH --mem={spec.memory_mb}" if spec.memory_mb > 0
        else "# no memory asked for: the partition's default applies",
        "walltime": spec.walltime_seconds, "requestWalltime": spec.walltime_seconds,
        "walltimeMinutes": minutes, "requestWalltimeMinute": minutes,
        "accessPoint": spec.access_point,
        "workerID": spec.worker_id,
        "queueName": spec.queue_id,
        "partition": partition,
        "pilotCommand": shlex.join(spec.pilot_command),
        "environment": "\n".join(f"export {name}={shlex.quote(value)}" for name, value in spec.environment.items()),
    }


def render_batch_script(template: str, spec: WorkerSpec, partition: str) -> str:
    check_template(template)
    return template.format_map(placeholder_values(spec, partition))


# Slurm's job states (squeue's and sacct's long form) as Harvester's Slurm monitor maps them.
_RUNNING = frozenset({"RUNNING", "COMPLETING",
                      # Harvester's too: the job holds its node and goes on.
                      "STOPPED", "SUSPENDED",
                      # Steps of a live job on its way to its end or to running again.
                      "SIGNALING", "STAGE_OUT", "RESIZING"})
_SUBMITTED = frozenset({"PENDING", "CONFIGURING",
                        # Requeued: back in the queue, to run again (Harvester would say failed,
                        # and lose a worker that still starts).
                        "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"})
_FINISHED = frozenset({"COMPLETED", "TIMEOUT", "PREEMPTED"})
_CANCELLED = frozenset({"CANCELLED"})


def _state_word(slurm_state: str) -> str:
    """`CANCELLED by 0` and sacct's truncated `CANCELLED+` are CANCELLED."""
    words = slurm_state.strip().split()
    return words[0].rstrip("+").upper() if words else ""


def worker_state(slurm_state: str) -> WorkerState:
    """A worker's state from its job's Slurm state. Anything not known to be live or to have
    ended well (FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE, ...) is FAILED."""
    word = _state_word(slurm_state)
    if word in _RUNNING:
        return WorkerState.RUNNING
    if word in _SUBMITTED:
        return WorkerState.SUBMITTED
    if word in _FINISHED:
        return WorkerState.FINISHED
    if word in _CANCELLED:
        return WorkerState.CANCELLED
    return WorkerState.FAILED


_BATCH_ID = re.compile(r"[0-9]+")


def is_batch_id(text: str) -> bool:
    """A job id as `sbatch --parsable` gives it: digits (job arrays are not used)."""
    return _BATCH_ID.fullmatch(text) is not None


def parse_sbatch(stdout: str) -> str:
    """The job id from `sbatch --parsable`: `<id>` or `<id>;<cluster>`, on its last line (sbatch
    may print warnings before it)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    batch_id = lines[-1].split(";", 1)[0] if lines else ""
    if not is_batch_id(batch_id):
        raise ValueError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return batch_id


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job as squeue or sacct reports it."""

    batch_id: str
    state: str
    node: str = ""
    # How the batch script ended: its exit status, or the signal that ended it (0 = none).
    exit_status: int | None = None
    signal: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    reason: str = ""


# squeue --Format: `name:|` prints a field unpadded followed by `|`, so fields are split on it
# (no field here can hold one). exit_code is the batch script's raw wait status.
SQUEUE_FIELDS = ("JobID", "State", "exit_code", "NodeList", "StartTime", "EndTime", "Reason")
SQUEUE_FORMAT = ",".join(f"{field}:|" for field in SQUEUE_FIELDS)
# sacct --parsable2: fields split by `|`; ExitCode is `<status>:<signal>`.
SACCT_FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Start", "End")
# The commands print times in this format when SLURM_TIME_FORMAT says so (squeue and sacct from
# the accounting database do; sacct reading the job completion file prints local times
# without an offset, which parse_* read in the zone they are given).
SLURM_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
_NO_TIME = frozenset({"", "N/A", "NONE", "UNKNOWN"})
_NO_NODE = frozenset({"", "(null)", "None assigned"})


def _time(text: str, local_zone: tzinfo) -> datetime | None:
    text = text.strip()
    if text.upper() in _NO_TIME:
        return None
    try:
        value = datetime.strptime(text, SLURM_TIME_FORMAT)
    except ValueError:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            return None
    return value if value.tzinfo is not None else value.replace(tzinfo=local_zone)


def _rows(stdout: str, fields: int, command: str) -> Iterable[list[str]]:
    for line in stdout.splitlines():
        if not line.strip():
            continue
        row = line.split("|")
        # squeue ends every field with the separator, so its lines carry one empty field more.
        if len(row) == fields + 1 and row[-1] == "":
            row = row[:-1]
        if len(row) != fields:
            raise ValueError(f"{command} printed a line of {len(row)} fields, not {fields}: {line[:200]!r}")
        yield row


def parse_squeue(stdout: str, local_zone: tzinfo) -> dict[str, SlurmJob]:
    """Jobs by id from `squeue --noheader --Format=SQUEUE_FORMAT` (with SLURM_TIME_FORMAT)."""
    jobs: dict[str, SlurmJob] = {}
    for batch_id, state, wait_status, node, start, end, reason in _rows(stdout, len(SQUEUE_FIELDS), "squeue"):
        exit_status: int | None = None
        signal = 0
        if wait_status.strip().isdigit():
            status = int(wait_status)
            # A POSIX wait status: the low seven bits the signal, the next byte the exit status.
            signal = status & 0x7F
            exit_status = None if signal else (status >> 8) & 0xFF
        jobs[batch_id.strip()] = SlurmJob(
            batch_id=batch_id.strip(), state=state.strip(), node="" if node.strip() in _NO_NODE else node.strip(),
            exit_status=exit_status, signal=signal, start_time=_time(start, local_zone),
            end_time=_time(end, local_zone), reason="" if reason.strip() == "None" else reason.strip())
    return jobs


def parse_sacct(stdout: str, local_zone: tzinfo) -> dict[str, SlurmJob]:
    """Jobs by id from `sacct --noheader --parsable2 --format=SACCT_FIELDS` (with -X or
    --completion: one line per job, no steps)."""
    jobs: dict[str, SlurmJob] = {}
    for batch_id, state, exit_code, node, start, end in _rows(stdout, len(SACCT_FIELDS), "sacct"):
        exit_status: int | None = None
        signal = 0
        status_text, _, signal_text = exit_code.strip().partition(":")
        if status_text.isdigit():
            signal = int(signal_text) if signal_text.isdigit() else 0
            exit_status = None if signal else int(status_text)
        jobs[batch_id.strip()] = SlurmJob(
            batch_id=batch_id.strip(), state=state.strip(), node="" if node.strip() in _NO_NODE else node.strip(),
            exit_status=exit_status, signal=signal, start_time=_time(start, local_zone),
            end_time=_time(end, local_zone))
    return jobs


def batch_report(worker_id: str, job: SlurmJob) -> BatchReport:
    """What harvester records of a worker from its job.

    Times are the job's own: Slurm also shows a pending job's expected start and a running job's
    expected end (its time limit), which are left out; a job that never got a node (cancelled
    while pending) has no start. The exit code is the batch script's (the pilot's, which it
    `exec`s), 128 + the signal's number when a signal ended it, as a shell reports it; none
    before the job ended or for a job that never ran. The error is Slurm's state, its reason and
    how the script ended, for every end but a plain COMPLETED (a cancelled job's reason is left
    out: it is the last reason it waited for, not why it was cancelled)."""
    state = worker_state(job.state)
    ended = state in (WorkerState.FINISHED, WorkerState.FAILED, WorkerState.CANCELLED)
    ran = bool(job.node) and state != WorkerState.SUBMITTED
    exit_code: int | None = None
    if ended and ran:
        exit_code = 128 + job.signal if job.signal else job.exit_status
    error = ""
    if ended and _state_word(job.state) != "COMPLETED":
        error = f"{job.state} ({job.reason})" if job.reason and state != WorkerState.CANCELLED else job.state
        if job.signal and ran:
            error += f", killed by signal {job.signal}"
        elif exit_code:
            error += f", exit code {exit_code}"
    return BatchReport(worker_id=worker_id, state=state, node=job.node, error=error, exit_code=exit_code,
                       start_time=job.start_time if ran else None, end_time=job.end_time if ended else None)
