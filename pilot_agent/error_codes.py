"""Pilot error codes: what the pilot reports in JobUpdate.error_code. The codes are the mesh's
one table, `panda_runtime.contracts.error_codes` (the server's and the pilot's, PanDA's
numbering); this module adds the pilot's mapping of a payload's terminating signal to a code.
`python -m pilot_agent.error_codes` prints the whole table as Markdown, as the README shows it.
"""

from __future__ import annotations

import signal

from panda_runtime.contracts.error_codes import (
    ALL,
    FILEEXISTS,
    GENERALERROR,
    GETADMISMATCH,
    KILLSIGNAL,
    LOOPINGJOB,
    MISSINGINPUTFILE,
    MISSINGOUTPUTFILE,
    MKDIR,
    PANDAKILL,
    PAYLOADEXCEEDMAXMEM,
    PAYLOADEXECUTIONFAILURE,
    PAYLOADOUTOFMEMORY,
    PUTADMISMATCH,
    REACHEDMAXTIME,
    SIGBUS,
    SIGINT,
    SIGQUIT,
    SIGSEGV,
    SIGTERM,
    SIGUSR1,
    SIGXCPU,
    STAGEINFAILED,
    STAGEOUTFAILED,
    UNKNOWNEXCEPTION,
    ErrorCode,
    Source,
    by_code,
    markdown_table,
)

__all__ = [
    "ALL", "FILEEXISTS", "GENERALERROR", "GETADMISMATCH", "KILLSIGNAL", "LOOPINGJOB", "MISSINGINPUTFILE",
    "MISSINGOUTPUTFILE", "MKDIR", "PANDAKILL", "PAYLOADEXCEEDMAXMEM", "PAYLOADEXECUTIONFAILURE", "PAYLOADOUTOFMEMORY",
    "PILOT_CODES", "PUTADMISMATCH", "REACHEDMAXTIME", "SIGBUS", "SIGINT", "SIGQUIT", "SIGSEGV", "SIGTERM", "SIGUSR1",
    "SIGXCPU", "STAGEINFAILED", "STAGEOUTFAILED", "UNKNOWNEXCEPTION", "ErrorCode", "by_code", "markdown_table",
    "signal_error",
]

# The codes the pilot sets; the table's others are the server's.
PILOT_CODES: tuple[ErrorCode, ...] = tuple(error for error in ALL if error.source is Source.PILOT)

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


def signal_error(signum: int) -> ErrorCode:
    """The error code for a payload that died of signal `signum`."""
    return _SIGNAL_ERRORS.get(signum, KILLSIGNAL)


if __name__ == "__main__":
    print(markdown_table(), end="")
