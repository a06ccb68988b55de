"""The command line's exit codes, and its own refusals (bad input, a missing file, ...); a failed
call to a service is a `panda_runtime.client.ServiceError` instead, whose gRPC code
`exit_code_of` maps to an exit code. main() prints either as one line."""

from __future__ import annotations

from enum import IntEnum

import grpc

from panda_runtime.client.credentials import CredentialsError, IssuerUnreachable
from panda_runtime.client.errors import ServiceError

__all__ = ["CliError", "ExitCode", "exit_code_of"]


class ExitCode(IntEnum):
    """What `panda` returns, for scripts to act on (the README's "Exit codes" lists them).

    2 is what argparse (and the shell's own builtins) return for a usage error; 130 is the
    shell's 128 + SIGINT. The others are this command line's own, kept small and few."""

    OK = 0
    # The service refused or could not do what was asked (a bad request, a state that does not
    # allow it, an internal error), or a local step failed (a file that cannot be read).
    FAILED = 1
    # The command line itself is wrong: a misspelled flag, a bad value, a missing argument.
    USAGE = 2
    # The job, task, queue, dataset, user ... named does not exist.
    NOT_FOUND = 3
    # Not signed in, the sign-in expired or was refused, or the caller may not do this.
    DENIED = 4
    # Nothing answers at the service's address, or it says it is unavailable or too slow to
    # answer (try again later).
    UNREACHABLE = 5
    # `job watch` / `task watch`: the job or task ended without succeeding (failed, cancelled,
    # closed; failed, broken, aborted).
    WORK_FAILED = 6
    INTERRUPTED = 130


_BY_STATUS = {
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.DENIED,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.DENIED,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNREACHABLE,
}


def exit_code_of(error: ServiceError | CredentialsError) -> ExitCode:
    """The exit code of a failed call, or of a token that could not be had: the one place
    gRPC's status codes become exit codes."""
    if isinstance(error, CredentialsError):
        return ExitCode.UNREACHABLE if isinstance(error, IssuerUnreachable) else ExitCode.DENIED
    if error.unreachable:
        return ExitCode.UNREACHABLE
    return _BY_STATUS.get(error.code, ExitCode.FAILED) if error.code is not None else ExitCode.FAILED


class CliError(Exception):
    """Ends the command: `panda: <message>` on stderr and this exit code."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
