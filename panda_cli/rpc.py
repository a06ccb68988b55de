"""The command line's side of the server connection: stubs, deadlines, and errors for people."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from panda.server.v1 import job_service_pb2_grpc, queue_service_pb2_grpc
from panda_runtime.client.channels import DEFAULT_DEADLINE_SECONDS, channel_credentials, error_message, sync_channel
from panda_runtime.client.credentials import TokenSource, credentials_from_settings

from .settings import CliSettings

Response = TypeVar("Response")

# How long to let the channel try to connect when telling "server down" from an UNAVAILABLE
# the server itself returned (e.g. its database is away).
REACHABILITY_PROBE_SECONDS = 2.0


# Phrases of gRPC core's messages for calls that never reached a server.
_CONNECT_FAILURES = (
    "failed to connect to all addresses",
    "Connection refused",
    "errors resolving",
    "DNS resolution failed",
    "No route to host",
    "Network is unreachable",
)


class CliError(Exception):
    """Ends the command: `panda: <message>` on stderr and this exit code."""

    def __init__(self, message: str, exit_code: int = 1, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # The gRPC status behind the error, for callers that handle some codes themselves.
        self.code = code


def unreachable_message(address: str) -> str:
    return f"cannot reach the server at {address} (is `panda up` running? set PANDA_SERVER or --server)"


def open_channel(address: str, tokens: TokenSource | None = None) -> grpc.Channel:
    """A channel to any PanDA mesh service carrying `tokens`, else the signed-in user's (or the
    configured robot's) token, over TLS when the legacy x509 path is configured."""
    settings = CliSettings()
    return sync_channel(address, tokens or credentials_from_settings(settings), tls=channel_credentials(settings))


class Client:
    """One channel to the server and the stubs the commands use."""

    def __init__(
        self, address: str, *, deadline: float = DEFAULT_DEADLINE_SECONDS, tokens: TokenSource | None = None
    ) -> None:
        self.address = address
        self.deadline = deadline
        self.channel = open_channel(address, tokens)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.queues = queue_service_pb2_grpc.QueueServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Callable[..., Response], request: Any, *, timeout: float | None = None) -> Response:
        """A unary call with a deadline; failures become CliError."""
        try:
            return method(request, timeout=timeout or self.deadline)
        except grpc.RpcError as error:
            raise self.translate(error) from None

    def call_with_retry(
        self,
        method: Callable[..., Response],
        request: Any,
        *,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> Response:
        """For calls that are safe to repeat (e.g. SubmitJobs with a request_id): retries
        transient failures, so a blip in the connection does not lose or duplicate work."""
        for attempt in range(1, attempts + 1):
            try:
                return method(request, timeout=self.deadline)
            except grpc.RpcError as error:
                transient = error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not transient or attempt == attempts:
                    raise self.translate(error) from None
                time.sleep(backoff * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def translate(self, error: grpc.RpcError) -> CliError:
        code = error.code() if hasattr(error, "code") else None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not self._connected(error):
            return CliError(unreachable_message(self.address), code=code)
        return CliError(error_message(error), code=code)

    def _connected(self, error: grpc.RpcError) -> bool:
        """Whether the failure came from a server we reached, rather than from not reaching one."""
        details = (error.details() if hasattr(error, "details") else "") or ""
        if any(marker in details for marker in _CONNECT_FAILURES):
            return False
        return self.reachable()

    def reachable(self, timeout: float = REACHABILITY_PROBE_SECONDS) -> bool:
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True
