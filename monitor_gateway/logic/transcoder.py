"""The gateway's work for one request: find its route, make its request message, call the
service with the caller's own metadata and a deadline, and hand back the response, or the
service's status as it was (its code, message and typed details)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2

from monitor_gateway.domain import responses
from monitor_gateway.domain.routes import Resolved, Route, RouteTable
from monitor_gateway.logic.upstreams import Upstreams

__all__ = ["Metadata", "OpenStream", "Transcoder", "UpstreamError"]

log = logging.getLogger("panda.gateway")

Metadata = Sequence[tuple[str, str | bytes]]
_DETAILS_KEY = "grpc-status-details-bin"


class UpstreamError(Exception):
    """The call ended with a status other than OK (or could not be made)."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status


def _status(route: Route, code: grpc.StatusCode, details: str | None,
            trailing: Metadata | None) -> status_pb2.Status:
    """The service's status: its typed details when it sent them, else its code and message.
    An UNAVAILABLE no service sent (the connection failed) says which service, not where it is."""
    for key, value in trailing or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            try:
                found = status_pb2.Status.FromString(value)
            except ValueError:
                break
            if found.code == code.value[0]:
                return found
    if code == grpc.StatusCode.UNAVAILABLE:
        log.warning("%s: %s", route.rpc, details)
        return status_pb2.Status(code=code.value[0], message=f"{route.service} is unavailable; try again later")
    return status_pb2.Status(code=code.value[0], message=details or "")


def _status_of(route: Route, error: grpc.aio.AioRpcError) -> status_pb2.Status:
    return _status(route, error.code(), error.details(), error.trailing_metadata())  # type: ignore[arg-type]


def _internal(route: Route, error: BaseException) -> UpstreamError:
    error_id = uuid.uuid4().hex[:12]
    log.error("%s failed (error id %s)", route.rpc, error_id, exc_info=error)
    return UpstreamError(responses.status(code_pb2.INTERNAL, f"internal error (error id {error_id})"))


@dataclass
class _StreamSlots:
    """Streams open at once, in all and per caller: one caller's watches cannot take them all."""

    limit: int
    per_caller: int
    _open: int = 0

    def __post_init__(self) -> None:
        self._by_caller: Counter[str] = Counter()

    def take(self, caller: str) -> None:
        if self._open >= self.limit:
            raise UpstreamError(responses.status(
                code_pb2.RESOURCE_EXHAUSTED, f"the gateway serves {self.limit} streams at once; try again later"))
        if self._by_caller[caller] >= self.per_caller:
            raise UpstreamError(responses.status(
                code_pb2.RESOURCE_EXHAUSTED,
                f"at most {self.per_caller} streams at once per caller; close one before opening another"))
        self._open += 1
        self._by_caller[caller] += 1

    def give_back(self, caller: str) -> None:
        self._open -= 1
        self._by_caller[caller] -= 1
        if not self._by_caller[caller]:
            del self._by_caller[caller]


class Transcoder:
    def __init__(self, routes: Sequence[Route], upstreams: Upstreams, *, deadline_seconds: float,
                 max_streams: int, max_streams_per_caller: int) -> None:
        served = [route for route in routes if upstreams.address_of(route.service) is not None]
        self.unserved = sorted({route.service for route in routes} - {route.service for route in served})
        self.table = RouteTable.of(served)
        self._upstreams = upstreams
        self._deadline = deadline_seconds
        self._slots = _StreamSlots(max_streams, max_streams_per_caller)

    def resolve(self, http_method: str, path: str) -> Resolved | None:
        return self.table.resolve(http_method, path)

    def _timeout(self, asked: float | None, streaming: bool) -> float | None:
        if streaming:
            return asked
        return self._deadline if asked is None else min(asked, self._deadline)

    async def call(self, route: Route, request: Message, metadata: Metadata,
                   timeout: float | None) -> tuple[Message, Metadata]:
        """The service's answer and the header metadata it sent with it."""
        method = self._upstreams.callable_for(route)
        try:
            call = method(request, metadata=metadata, timeout=self._timeout(timeout, False))
            response: Message = await call
            headers: Metadata = tuple(await call.initial_metadata() or ())
        except grpc.aio.AioRpcError as error:
            raise UpstreamError(_status_of(route, error)) from None
        except Exception as error:
            raise _internal(route, error) from None
        return response, headers

    async def stream(self, route: Route, request: Message, metadata: Metadata, timeout: float | None,
                     caller: str) -> OpenStream:
        """The open stream. A stream the service refuses at once (bad argument, no token) fails
        here, before its first message, so the caller gets an HTTP error rather than a 200 whose
        body says it failed. The caller closes the stream, however it ends."""
        self._slots.take(caller)
        opened = OpenStream(route, self._upstreams.callable_for(route)(
            request, metadata=metadata, timeout=self._timeout(timeout, True)), lambda: self._slots.give_back(caller))
        try:
            await opened.wait_accepted()
        except BaseException:
            opened.close()
            raise
        return opened


class OpenStream:
    def __init__(self, route: Route, call: grpc.aio.UnaryStreamCall[Any, Any], release: Callable[[], None]) -> None:
        self._route, self._call, self._release = route, call, release
        self._closed = False
        self.headers: Metadata = ()

    async def wait_accepted(self) -> None:
        """Returns once the service has answered with its headers (it accepted the call), kept in
        `headers`; raises UpstreamError when it ended the call instead."""
        self.headers = tuple(await self._call.initial_metadata() or ())
        if self._call.done():
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise UpstreamError(await self._ended_status(code))

    async def _ended_status(self, code: grpc.StatusCode) -> status_pb2.Status:
        return _status(self._route, code, await self._call.details(), await self._call.trailing_metadata())  # type: ignore[arg-type]

    async def next(self) -> Message | None:
        """The next message; None when the service ended the stream with OK."""
        try:
            message = await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise UpstreamError(_status_of(self._route, error)) from None
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as error:
            raise _internal(self._route, error) from None
        if message is grpc.aio.EOF:
            code = await self._call.code()
            if code != grpc.StatusCode.OK:
                raise UpstreamError(await self._ended_status(code))
            return None
        return cast(Message, message)

    def close(self) -> None:
        """Cancels the call (the service sees its watcher leave) and frees its slot; once."""
        if not self._closed:
            self._closed = True
            self._call.cancel()
            self._release()
