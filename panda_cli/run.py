"""`panda run`: a task from prun's options (panda-client's names and meanings, where this system
has the concept). The options become a task file's mapping (README, "Task files"), which
task_specs builds and checks as it does for `panda task submit -f`; `--noSubmit` prints that
mapping instead of submitting it. The table of options is in the README ("From prun and pbook")."""

from __future__ import annotations

import argparse
import re
from typing import Any

import yaml

from . import output
from .errors import CliError, ExitCode
from .specs import SpecError
from .task_specs import task_from_mapping
from .tasks import submit_task

__all__ = ["EXEC_PLACEHOLDERS", "SHELL", "TASK_KEY_OPTIONS", "UNSUPPORTED_PLACEHOLDERS", "cmd_run",
           "exec_transformation", "task_mapping"]

# prun runs --exec in a shell; so does every job here.
SHELL = ("/bin/sh", "-c")

# prun's placeholders of --exec and this system's placeholders they become.
EXEC_PLACEHOLDERS = {
    "IN": "IN_CSV",  # the job's input file names, comma separated, as prun gives them
    "OUT": "OUT",
    "SKIPEVENTS": "SKIP_EVENTS",
    "MAXEVENTS": "MAX_EVENTS",
    "FIRSTEVENT": "FIRST_EVENT",
}
# prun's placeholders that have nothing to become here, with what to do instead.
UNSUPPORTED_PLACEHOLDERS = {
    "RNDM": "there is no per-job counter from a base number; ${SERIAL}, the job's serial in the task, may do",
    "DB": "there are no database release datasets here",
    "DATASET_IN": "there is no bulk submission here",
    "DATASET_OUT": "there is no bulk submission here",
    "BULKSEQNUMBER": "there is no bulk submission here",
    "CORE_NUMBER": "no placeholder gives the cores here; the job asks for --nCore",
    "SEGMENT_NAME": "there are no segments here",
}
# %NAME, with prun's base-number suffix (%RNDM:100, %FIRSTEVENT=1).
_PLACEHOLDER = re.compile(r"%([A-Z][A-Z0-9_]*)([:=]\d+)?")
# Secondary streams (%IN2, ...) come with --secondaryDSs, which has no counterpart here.
_SECONDARY_STREAM = re.compile(r"IN\d+")

# The task file key each option sets: a refusal of the key names the option.
TASK_KEY_OPTIONS = {
    "task_name": "--outDS",
    "output_dataset": "--outDS",
    "transformation": "--exec",
    "input_datasets": "--inDS",
    "split.files_per_job": "--nFilesPerJob",
    "split.gb_per_job": "--nGBPerJob",
    "split.events_per_job": "--nEventsPerJob",
    "resources.cores": "--nCore",
    "resources.memory": "--memory",
    "resources.walltime": "--maxWalltime",
    "priority": "--priority",
    "max_attempts": "--maxAttempt",
    "scout_jobs": "--expertOnly_skipScout",
    "queues": "--site",
    "excluded_queues": "--excludedSite",
    "working_group": "--workingGroup",
    "vo": "--vo",
}


def exec_transformation(text: str) -> list[str]:
    """The job command of `--exec`: the string run by /bin/sh, as prun runs it, with prun's
    placeholders replaced by this system's (`%IN` -> `${IN_CSV}`, `%OUT` -> `${OUT}`, ...)."""
    if not text.strip():
        raise CliError("--exec is empty: give the command each job runs, e.g. --exec 'wc -l %IN > %OUT'",
                       ExitCode.USAGE)

    def replace(match: re.Match[str]) -> str:
        name, base = match.group(1), match.group(2)
        if name in EXEC_PLACEHOLDERS:
            if base:
                raise CliError(f"--exec: {match.group(0)}: placeholders take no base number here", ExitCode.USAGE)
            return "${" + EXEC_PLACEHOLDERS[name] + "}"
        if name in UNSUPPORTED_PLACEHOLDERS:
            raise CliError(f"--exec: %{name} has no counterpart here: {UNSUPPORTED_PLACEHOLDERS[name]}",
                           ExitCode.USAGE)
        if _SECONDARY_STREAM.fullmatch(name):
            raise CliError(f"--exec: %{name} is a secondary stream (prun's --secondaryDSs), which does not exist "
                           "here; a task reads its --inDS datasets through %IN", ExitCode.USAGE)
        return match.group(0)  # not a placeholder: the shell gets it as written

    return [*SHELL, _PLACEHOLDER.sub(replace, text)]


def _names(values: list[str], option: str) -> list[str]:
    """Comma-separated names, possibly given several times; prun's trailing '/' (a container)
    is dropped."""
    names = [n.strip().removesuffix("/") for value in values for n in value.split(",")]
    names = [n for n in names if n]
    if not names:
        raise CliError(f"{option}: give at least one name", ExitCode.USAGE)
    return names


def _queues(site: str | None) -> list[str]:
    if site is None or site.strip() == "AUTO":
        return []  # prun's default: brokerage chooses
    queues = _names([site], "--site")
    if "AUTO" in queues:
        raise CliError("--site: AUTO in a list (any queue when the listed ones lack the input) has no counterpart "
                       "here; give the queues, or AUTO alone for any queue", ExitCode.USAGE)
    return queues


def _excluded_queues(values: list[str] | None) -> list[str]:
    if not values:
        return []
    queues = _names(values, "--excludedSite")
    wildcards = [q for q in queues if "*" in q]
    if wildcards:
        raise CliError(f"--excludedSite: {wildcards[0]}: wildcards are not supported here; name each queue",
                       ExitCode.USAGE)
    return queues


def task_mapping(args: argparse.Namespace) -> dict[str, Any]:
    """The task file (README, "Task files") the options describe: what `panda task submit -f`
    reads, key for key."""
    output_dataset = args.outDS.strip().removesuffix("/")
    task: dict[str, Any] = {
        "task_name": output_dataset,  # prun names the task after its output
        "transformation": exec_transformation(args.exec),
        "input_datasets": _names([args.inDS], "--inDS"),
        "output_dataset": output_dataset,
    }
    if args.nFilesPerJob is not None:
        task["split"] = {"files_per_job": args.nFilesPerJob}
    elif args.nGBPerJob is not None:
        task["split"] = {"gb_per_job": args.nGBPerJob}
    elif args.nEventsPerJob is not None:
        task["split"] = {"events_per_job": args.nEventsPerJob}
    resources: dict[str, int] = {}
    if args.nCore is not None:
        resources["cores"] = args.nCore
    if args.memory is not None:
        resources["memory"] = args.memory * (args.nCore or 1)  # prun's --memory is per core
    if args.maxWalltime is not None:
        resources["walltime"] = args.maxWalltime * 3600  # prun's --maxWalltime is in hours
    if resources:
        task["resources"] = resources
    if args.priority is not None:
        task["priority"] = args.priority
    if args.maxAttempt is not None:
        task["max_attempts"] = args.maxAttempt
    if args.expertOnly_skipScout:
        task["scout_jobs"] = 0
    queues = _queues(args.site)
    if queues:
        task["queues"] = queues
    excluded = _excluded_queues(args.excludedSite)
    if excluded:
        task["excluded_queues"] = excluded
    if args.workingGroup is not None:
        task["working_group"] = args.workingGroup
    if args.vo is not None:
        task["vo"] = args.vo
    return task


def _option_message(message: str) -> str:
    """A task file key's refusal (`input_datasets[1]: ...`), said of the option that set the key
    (`--inDS: ...`)."""
    for key in sorted(TASK_KEY_OPTIONS, key=len, reverse=True):
        said = re.match(re.escape(key) + r"(\[\d+\])?(?=$|[ :.])", message)
        if said:
            return TASK_KEY_OPTIONS[key] + message[said.end():]
    return message


def cmd_run(args: argparse.Namespace) -> int:
    task = task_mapping(args)
    try:
        params = task_from_mapping(task)
    except SpecError as exc:
        raise CliError(_option_message(str(exc)), ExitCode.USAGE) from None
    if args.noSubmit:
        if args.json:
            output.print_json(task)
        else:
            print(yaml.safe_dump(task, sort_keys=False, default_flow_style=None, allow_unicode=True, width=1000),
                  end="")
        return 0
    return submit_task(args, params)
