"""Every error code a job may end with (`Job.error_code`), in one table: those the server sets
itself (PanDA's supervisor codes) and those the pilot sets (PanDA's pilot codes: pilot 1/2/3
keep the same numbering because the PanDA server and monitor know them), so operators read
them as they always have. The server, the pilot, `JobService.ListErrorCodes` and the README
read this table; `python -m panda_runtime.contracts.error_codes` prints it as the README's
Markdown."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ALL", "FILEEXISTS", "GENERALERROR", "GETADMISMATCH", "HOLDING_TIMEOUT", "KILLSIGNAL", "KILL_NOT_CONFIRMED",
    "LOOPINGJOB", "LOST_HEARTBEAT", "MISSINGINPUTFILE", "MISSINGOUTPUTFILE", "MKDIR", "PANDAKILL",
    "PAYLOADEXCEEDMAXMEM", "PAYLOADEXECUTIONFAILURE", "PAYLOADOUTOFMEMORY", "PUTADMISMATCH", "REACHEDMAXTIME",
    "SENT_NO_REPLY", "SIGBUS", "SIGINT", "SIGQUIT", "SIGSEGV", "SIGTERM", "SIGUSR1", "SIGXCPU", "STAGEINFAILED",
    "STAGEOUTFAILED", "UNKNOWNEXCEPTION", "ErrorCode", "Source", "by_code", "markdown_table",
]


class Source(Enum):
    """Which part of the system sets a code."""

    SERVER = "server"
    PILOT = "pilot"


SERVER = Source.SERVER
PILOT = Source.PILOT


@dataclass(frozen=True)
class ErrorCode:
    code: int
    name: str
    meaning: str
    used_when: str
    source: Source


# --- set by the server (its watchdogs) ----------------------------------------------------

LOST_HEARTBEAT = ErrorCode(
    100,
    "LOSTHEARTBEAT",
    "lost heartbeat",
    "No heartbeat for the heartbeat timeout, and its pilot not heard on its stream either.",
    SERVER,
)
SENT_NO_REPLY = ErrorCode(
    102,
    "SENTNOREPLY",
    "sent to a pilot that never replied",
    "The job was sent to a pilot that did not reply within the sent timeout.",
    SERVER,
)
HOLDING_TIMEOUT = ErrorCode(
    103,
    "HOLDINGTIMEOUT",
    "holding for too long",
    "The job stayed holding for longer than the holding timeout.",
    SERVER,
)
KILL_NOT_CONFIRMED = ErrorCode(
    110,
    "KILLNOTCONFIRMED",
    "killed: the pilot did not confirm within the grace period",
    "The job was killed, and its pilot did not confirm within the kill grace period; it ends cancelled.",
    SERVER,
)

# --- set by the pilot ----------------------------------------------------------------------

GENERALERROR = ErrorCode(
    1008,
    "GENERALERROR",
    "General pilot error",
    "The pilot stopped before it could start a job it had accepted.",
    PILOT,
)
STAGEINFAILED = ErrorCode(
    1099,
    "STAGEINFAILED",
    "Failed to stage-in file",
    "An input could not be copied in: no or unknown storage element, bad scope or LFN, a path that resolves outside "
    "its storage element, I/O error, size mismatch.",
    PILOT,
)
STAGEOUTFAILED = ErrorCode(
    1137,
    "STAGEOUTFAILED",
    "Failed to stage-out file",
    "An output could not be copied out: no or unknown storage element, bad scope or LFN, a path that resolves "
    "outside its storage element, I/O error, size mismatch.",
    PILOT,
)
PANDAKILL = ErrorCode(
    1144,
    "PANDAKILL",
    "This job was killed by panda server",
    "The server sent a kill command; the job ends cancelled.",
    PILOT,
)
LOOPINGJOB = ErrorCode(
    1150,
    "LOOPINGJOB",
    "Looping job killed by pilot",
    "No file in the job's work dir was modified for --looping-timeout seconds.",
    PILOT,
)
MISSINGOUTPUTFILE = ErrorCode(
    1165,
    "MISSINGOUTPUTFILE",
    "Local output file is missing",
    "The payload succeeded but a declared output is not at <workdir>/<lfn>.",
    PILOT,
)
GETADMISMATCH = ErrorCode(
    1171,
    "GETADMISMATCH",
    "adler32 mismatch on input file",
    "A staged-in file's adler32 differs from the job's.",
    PILOT,
)
PUTADMISMATCH = ErrorCode(
    1172,
    "PUTADMISMATCH",
    "adler32 mismatch on output file",
    "The copy on the storage element does not read back with the source's adler32.",
    PILOT,
)
MKDIR = ErrorCode(1199, "MKDIR", "Failed to create directory", "The job's work dir could not be created.", PILOT)
KILLSIGNAL = ErrorCode(
    1200,
    "KILLSIGNAL",
    "Job terminated by unknown kill signal",
    "The payload died of a signal not listed below.",
    PILOT,
)
SIGTERM = ErrorCode(
    1201,
    "SIGTERM",
    "Job killed by signal: SIGTERM",
    "The payload died of SIGTERM, or the pilot itself got SIGTERM and stopped the payload.",
    PILOT,
)
SIGQUIT = ErrorCode(1202, "SIGQUIT", "Job killed by signal: SIGQUIT", "The payload died of SIGQUIT.", PILOT)
SIGSEGV = ErrorCode(1203, "SIGSEGV", "Job killed by signal: SIGSEGV", "The payload died of SIGSEGV.", PILOT)
SIGXCPU = ErrorCode(1204, "SIGXCPU", "Job killed by signal: SIGXCPU", "The payload died of SIGXCPU (CPU limit).", PILOT)
SIGBUS = ErrorCode(1206, "SIGBUS", "Job killed by signal: SIGBUS", "The payload died of SIGBUS.", PILOT)
SIGUSR1 = ErrorCode(1207, "SIGUSR1", "Job killed by signal: SIGUSR1", "The payload died of SIGUSR1.", PILOT)
SIGINT = ErrorCode(
    1208,
    "SIGINT",
    "Job killed by signal: SIGINT",
    "The payload died of SIGINT, or the pilot itself got SIGINT and stopped the payload.",
    PILOT,
)
PAYLOADOUTOFMEMORY = ErrorCode(
    1212,
    "PAYLOADOUTOFMEMORY",
    "Payload ran out of memory",
    "The payload got a SIGKILL the pilot did not send while its RSS was near the job's memory limit "
    "(the kernel's OOM killer, most likely).",
    PILOT,
)
REACHEDMAXTIME = ErrorCode(
    1213,
    "REACHEDMAXTIME",
    "Reached batch system time limit",
    "The payload ran longer than the job's walltime (or than the pilot's remaining lifetime).",
    PILOT,
)
FILEEXISTS = ErrorCode(
    1221,
    "FILEEXISTS",
    "File already exists",
    "An output's name (scope:lfn) already holds a file on its storage element that this job did not write; "
    "a file is never overwritten.",
    PILOT,
)
PAYLOADEXCEEDMAXMEM = ErrorCode(
    1235,
    "PAYLOADEXCEEDMAXMEM",
    "Payload exceeded maximum allowed memory",
    "The payload's process tree used more RSS than the job's memory_mb.",
    PILOT,
)
UNKNOWNEXCEPTION = ErrorCode(
    1301,
    "UNKNOWNEXCEPTION",
    "An unknown pilot exception has occurred",
    "A bug in the pilot; the diag has the error.",
    PILOT,
)
PAYLOADEXECUTIONFAILURE = ErrorCode(
    1305,
    "PAYLOADEXECUTIONFAILURE",
    "Failed to execute payload",
    "The payload exited non-zero, or its command is empty, not found or not executable.",
    PILOT,
)
MISSINGINPUTFILE = ErrorCode(
    1331,
    "MISSINGINPUTFILE",
    "Input file is missing in storage element",
    "An input is not on its storage element.",
    PILOT,
)

ALL: tuple[ErrorCode, ...] = tuple(
    sorted(
        (value for value in dict(globals()).values() if isinstance(value, ErrorCode)),
        key=lambda error: error.code,
    )
)
_BY_CODE = {error.code: error for error in ALL}


def by_code(code: int) -> ErrorCode | None:
    return _BY_CODE.get(code)


def markdown_table() -> str:
    """The table as Markdown, one row per code, as the README shows it."""
    lines = ["| code | name | meaning | used when | set by |", "| ---: | --- | --- | --- | --- |"]
    for error in ALL:
        cells = (str(error.code), f"`{error.name}`", error.meaning, error.used_when, error.source.value)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
