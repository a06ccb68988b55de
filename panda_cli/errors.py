"""The command line's own refusals (bad input, a missing file, ...); a failed call to a service
is a `panda_runtime.client.ServiceError` instead. main() prints either as one line."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """Ends the command: `panda: <message>` on stderr and this exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
