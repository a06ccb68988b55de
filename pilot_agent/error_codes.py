"""Pilot error codes: the one table of what the pilot reports in JobUpdate.error_code.

The numbers are PanDA's pilot codes (pilot 1/2/3 keep the same numbering because the PanDA
server and monitor know them), so operators can read them as they always have.
`python -m pilot_agent.error_codes` prints the table as Markdown for the README.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

__all__ = [
    "ALL", "FILEEXISTS", "GENERALERROR", "GETADMISMATCH", "KILLSIGNAL", "LOOPINGJOB", "MISSINGINPUTFILE",
    "MISSINGOUTPUTFILE", "MKDIR", "PANDAKILL", "PAYLOADEXCEEDMAXMEM", "PAYLOADEXECUTIONFAILURE", "PAYLOADOUTOFMEMORY",
    "PUTADMISMATCH", "REACHEDMAXTIME", "SIGBUS", "SIGINT", "SIGQUIT", "SIGSEGV", "SIGTERM", "SIGUSR1", "SIGXCPU",
    "STAGEINFAILED", "STAGEOUTFAILED", "UNKNOWNEXCEPTION", "ErrorCode", "by_code", "markdown_table", "signal_error",
]


@dataclass(frozen=True)
class ErrorCode:
    code: int
    name: str
    message: str
    used_when: str


GENERALERROR = ErrorCode(
    1008,
    "GENERALERROR",
    "General pilot error",
    "The pilot stopped before it could start a job it had accepted.",
)
STAGEINFAILED = ErrorCode(
    1099,
    "STAGEINFAILED",
    "Failed to stage-in file",
    "An input could not be copied in: no or unknown storage element, bad scope or LFN, a path that resolves outside "
    "its storage element, I/O error, size mismatch.",
)
STAGEOUTFAILED = ErrorCode(
    1137,
    "STAGEOUTFAILED",
    "Failed to stage-out file",
    "An output could not be copied out: no or unknown storage element, bad scope or LFN, a path that resolves "
    "outside its storage element, I/O error, size mismatch.",
)
PANDAKILL = ErrorCode(
    1144,
    "PANDAKILL",
    "This job was killed by panda server",
    "The server sent a kill command; the job ends cancelled.",
)
LOOPINGJOB = ErrorCode(
    1150,
    "LOOPINGJOB",
    "Looping job killed by pilot",
    "No file in the job's work dir was modified for --looping-timeout seconds.",
)
MISSINGOUTPUTFILE = ErrorCode(
    1165,
    "MISSINGOUTPUTFILE",
    "Local output file is missing",
    "The payload succeeded but a declared output is not at <workdir>/<lfn>.",
)
GETADMISMATCH = ErrorCode(
    1171,
    "GETADMISMATCH",
    "adler32 mismatch on input file",
    "A staged-in file's adler32 differs from the job's.",
)
PUTADMISMATCH = ErrorCode(
    1172,
    "PUTADMISMATCH",
    "adler32 mismatch on output file",
    "The copy on the storage element does not read back with the source's adler32.",
)
MKDIR = ErrorCode(1199, "MKDIR", "Failed to create directory", "The job's work dir could not be created.")
KILLSIGNAL = ErrorCode(
    1200,
    "KILLSIGNAL",
    "Job terminated by unknown kill signal",
    "The payload died of a signal not listed below.",
)
SIGTERM = ErrorCode(
    1201,
    "SIGTERM",
    "Job killed by signal: SIGTERM",
    "The payload died of SIGTERM, or the pilot itself got SIGTERM and stopped the payload.",
)
SIGQUIT = ErrorCode(1202, "SIGQUIT", "Job killed by signal: SIGQUIT", "The payload died of SIGQUIT.")
SIGSEGV = ErrorCode(1203, "SIGSEGV", "Job killed by signal: SIGSEGV", "The payload died of SIGSEGV.")
SIGXCPU = ErrorCode(1204, "SIGXCPU", "Job killed by signal: SIGXCPU", "The payload died of SIGXCPU (CPU limit).")
SIGBUS = ErrorCode(1206, "SIGBUS", "Job killed by signal: SIGBUS", "The payload died of SIGBUS.")
SIGUSR1 = ErrorCode(1207, "SIGUSR1", "Job killed by signal: SIGUSR1", "The payload died of SIGUSR1.")
SIGINT = ErrorCode(
    1208,
    "SIGINT",
    "Job killed by signal: SIGINT",
    "The payload died of SIGINT, or the pilot itself got SIGINT and stopped the payload.",
)
PAYLOADOUTOFMEMORY = ErrorCode(
    1212,
    "PAYLOADOUTOFMEMORY",
    "Payload ran out of memory",
    "The payload got a SIGKILL the pilot did not send while its RSS was near the job's memory limit "
    "(the kernel's OOM killer, most likely).",
)
REACHEDMAXTIME = ErrorCode(
    1213,
    "REACHEDMAXTIME",
    "Reached batch system time limit",
    "The payload ran longer than the job's walltime (or than the pilot's remaining lifetime).",
)
FILEEXISTS = ErrorCode(
    1221,
    "FILEEXISTS",
    "File already exists",
    "An output's name (scope:lfn) already holds a file on its storage element that this job did not write; "
    "a file is never overwritten.",
)
PAYLOADEXCEEDMAXMEM = ErrorCode(
    1235,
    "PAYLOADEXCEEDMAXMEM",
    "Payload exceeded maximum allowed memory",
    "The payload's process tree used more RSS than the job's memory_mb.",
)
UNKNOWNEXCEPTION = ErrorCode(
    1301,
    "UNKNOWNEXCEPTION",
    "An unknown pilot exception has occurred",
    "A bug in the pilot; the diag has the error.",
)
PAYLOADEXECUTIONFAILURE = ErrorCode(
    1305,
    "PAYLOADEXECUTIONFAILURE",
    "Failed to execute payload",
    "The payload exited non-zero, or its command is empty, not found or not executable.",
)
MISSINGINPUTFILE = ErrorCode(
    1331,
    "MISSINGINPUTFILE",
    "Input file is missing in storage element",
    "An input is not on its storage element.",
)

ALL: tuple[ErrorCode, ...] = tuple(
    sorted(
        (value for value in dict(globals()).values() if isinstance(value, ErrorCode)),
        key=lambda error: error.code,
    )
)
_BY_CODE = {error.code: error for error in ALL}

# PanDA's mapping of the payload's terminating signal to a code; other signals give KILLSIGNAL.
_SIGNAL_ERRORS: dict[int, ErrorCode] = {
    signal.SIGTERM: SIGTERM,
    signal.SIGQUIT: SIGQUIT,
    signal.SIGSEGV: SIGSEGV,
    signal.SIGXCPU: SIGXCPU,
    signal.SIGBUS: SIGBUS,
    signal.SIGUSR1: SIGUSR1,
    signal.SIGINT: SIGINT,
}


def by_code(code: int) -> ErrorCode | None:
    return _BY_CODE.get(code)


def signal_error(signum: int) -> ErrorCode:
    """The error code for a payload that died of signal `signum`."""
    return _SIGNAL_ERRORS.get(signum, KILLSIGNAL)


def markdown_table() -> str:
    """The table as Markdown, one row per code."""
    lines = ["| code | name | message | used when |", "| ---: | --- | --- | --- |"]
    for error in ALL:
        cells = (str(error.code), f"`{error.name}`", error.message, error.used_when)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
