"""The pilot's side of the Connect stream: saying Hello and waiting for the Welcome, one open
call whose writes go through a queue, the final updates waiting for their acknowledgement, and
the names of what the server sends, for the log."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

import grpc

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import dispatch_service_pb2_grpc
from panda_runtime.client.channels import error_message

__all__ = [
    "BACKOFF_INITIAL_SECONDS",
    "BACKOFF_MAX_SECONDS",
    "FINAL_RESEND_INITIAL_SECONDS",
    "FINAL_RESEND_MAX_SECONDS",
    "WELCOME_TIMEOUT_SECONDS",
    "HelloRefused",
    "OpenStream",
    "PendingFinal",
    "Stream",
    "command_kind_name",
    "open_call",
    "say_hello",
    "status_name",
]

BACKOFF_INITIAL_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
# A server that takes longer than this to answer Hello is treated as a dropped stream.
WELCOME_TIMEOUT_SECONDS = 30.0
# An unacknowledged final update is sent again on the same stream after 1 s, then after twice as
# long each time, up to 30 s (and at least once per heartbeat interval: the resends are what the
# server hears of a pilot waiting for its acknowledgement), each delay with +-20% jitter.
FINAL_RESEND_INITIAL_SECONDS = 1.0
FINAL_RESEND_MAX_SECONDS = 30.0
# A refused Hello with one of these will be refused again: the pilot exits instead of retrying.
FATAL_HELLO_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)


class HelloRefused(Exception):
    """The server refused our Hello for a reason retrying will not fix."""


# The pilot's Connect call: requests out, responses in.
Stream = grpc.aio.StreamStreamCall[dispatch_pb2.ConnectRequest, dispatch_pb2.ConnectResponse]


class OpenStream:
    """One open Connect call; requests go through a queue so only one task writes."""

    def __init__(self, call: Stream) -> None:
        self.call = call
        self.outbox: asyncio.Queue[dispatch_pb2.ConnectRequest | None] = asyncio.Queue()
        self.requested_jobs = False

    def send(self, request: dispatch_pb2.ConnectRequest) -> None:
        self.outbox.put_nowait(request)

    def close(self) -> None:
        self.outbox.put_nowait(None)

    async def write_loop(self) -> None:
        while (request := await self.outbox.get()) is not None:
            await self.call.write(request)
        await self.call.done_writing()


@dataclass
class PendingFinal:
    """A final update waiting for its acknowledgement, and when to send it again."""

    update: dispatch_pb2.JobUpdate
    sent_at: float = 0.0  # monotonic time of the last send; 0 = not sent on this stream
    resend_at: float = 0.0
    sends: int = 0  # on this stream

    def sent(self, now: float, longest_wait: float) -> None:
        """It was just sent; the next send is due after the backoff, at most `longest_wait` s."""
        delay = min(FINAL_RESEND_INITIAL_SECONDS * 2**self.sends, FINAL_RESEND_MAX_SECONDS, longest_wait)
        self.sent_at, self.resend_at = now, now + delay * random.uniform(0.8, 1.2)
        self.sends += 1

    def new_stream(self) -> None:
        """A new stream: its backoff starts again."""
        self.sends = 0


def open_call(channel: grpc.aio.Channel) -> Stream:
    """A Connect call on `channel`."""
    return dispatch_service_pb2_grpc.DispatchServiceStub(channel).Connect()


async def say_hello(call: Stream, hello: dispatch_pb2.ConnectRequest) -> tuple[Stream, dispatch_pb2.Welcome]:
    """Send `hello` on a new Connect call and wait for the Welcome. HelloRefused when the server
    refuses for a reason retrying will not fix."""
    await call.write(hello)
    try:
        first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_SECONDS)
    except grpc.aio.AioRpcError as exc:
        if exc.code() in FATAL_HELLO_CODES:
            raise HelloRefused(error_message(exc)) from exc
        raise
    if not isinstance(first, dispatch_pb2.ConnectResponse) or first.WhichOneof("message") != "welcome":
        raise ConnectionError("the server did not answer Hello with Welcome")
    return call, first.welcome


def command_kind_name(value: dispatch_pb2.Command.Kind.ValueType) -> str:
    # Proto3 enums are open: a newer server may send a value this pilot does not know.
    try:
        return dispatch_pb2.Command.Kind.Name(value)
    except ValueError:
        return str(value)


def status_name(code: int) -> str:
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return str(code)
