"""Client-side gRPC metrics, named as go-grpc-prometheus names them (`grpc_client_*`), for the
calls one service makes to another (JEDI to the server, ...): interceptors for blocking and
asyncio channels. A channel gets them when asked (`ConnectConfig.metrics`, or `metrics=True` to
`channels.sync_channel` / `aio_channel`), so the command line and the pilot, which serve no
`/metrics`, load none of this.

Each call counts once in `grpc_client_started_total` when it starts and once in
`grpc_client_handled_total` with its status code when it ends (its time in
`grpc_client_handling_seconds`); every message counts in `grpc_client_msg_sent_total` /
`grpc_client_msg_received_total`, a unary call's request and response included."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Counter, Histogram

from panda_runtime.grpc_codes import code_label

__all__ = [
    "CLIENT_HANDLED", "CLIENT_HANDLING_SECONDS", "CLIENT_MSG_RECEIVED", "CLIENT_MSG_SENT", "CLIENT_STARTED",
    "aio_interceptors", "sync_interceptor",
]

_LABELS = ["grpc_type", "grpc_service", "grpc_method"]
CLIENT_STARTED = Counter("grpc_client_started_total", "RPCs started on the client.", _LABELS)
CLIENT_HANDLED = Counter(
    "grpc_client_handled_total", "RPCs completed on the client, regardless of success or failure.",
    [*_LABELS, "grpc_code"],
)
CLIENT_HANDLING_SECONDS = Histogram(
    "grpc_client_handling_seconds", "Latency of RPCs on the client, from their start until the status arrived.",
    _LABELS, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 3600),
)
CLIENT_MSG_RECEIVED = Counter(
    "grpc_client_msg_received_total", "RPC messages received by the client (a unary call's response included).",
    _LABELS,
)
CLIENT_MSG_SENT = Counter(
    "grpc_client_msg_sent_total", "RPC messages sent by the client (a unary call's request included).", _LABELS,
)


class _Monitor:
    """One call's metrics: started on creation, handled once, whichever way it ends."""

    __slots__ = ("_done", "_labels", "_started", "received", "sent")

    def __init__(self, rpc_type: str, method: str | bytes) -> None:
        name = method.decode() if isinstance(method, bytes) else method
        service, _, short = name.lstrip("/").partition("/")
        self._labels = (rpc_type, service, short)
        self._started = time.perf_counter()
        self._done = False
        self.sent = CLIENT_MSG_SENT.labels(*self._labels)
        self.received = CLIENT_MSG_RECEIVED.labels(*self._labels)
        CLIENT_STARTED.labels(*self._labels).inc()

    def handled(self, code: grpc.StatusCode | None, *, unary_response: bool = False) -> None:
        if self._done:
            return
        self._done = True
        code = code or grpc.StatusCode.UNKNOWN
        if unary_response and code is grpc.StatusCode.OK:
            self.received.inc()
        CLIENT_HANDLED.labels(*self._labels, code_label(code)).inc()
        CLIENT_HANDLING_SECONDS.labels(*self._labels).observe(time.perf_counter() - self._started)

    def count_sent(self, requests: Iterator[Any]) -> Iterator[Any]:
        for request in requests:
            self.sent.inc()
            yield request

    async def count_sent_async(self, requests: Any) -> AsyncIterator[Any]:
        if hasattr(requests, "__aiter__"):
            async for request in requests:
                self.sent.inc()
                yield request
        else:
            for request in requests:
                self.sent.inc()
                yield request


def _sync_code(call: Any) -> grpc.StatusCode | None:
    try:
        code = call.code()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode) else None


# -- blocking channels -------------------------------------------------------------------------


class _CountingStream:
    """A blocking call's response stream that counts what it yields; everything else (cancel,
    code, details, metadata, ...) is the call's own."""

    def __init__(self, call: Any, monitor: _Monitor) -> None:
        self._call = call
        self._monitor = monitor

    def __iter__(self) -> _CountingStream:
        return self

    def __next__(self) -> Any:
        response = next(self._call)
        self._monitor.received.inc()
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _SyncMetrics(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    @staticmethod
    def _when_done(call: Any, monitor: _Monitor, unary_response: bool) -> None:
        # A unary call's outcome is done already (its callback runs at once); a future's or a
        # stream's runs when its status arrives.
        call.add_done_callback(lambda done: monitor.handled(_sync_code(done), unary_response=unary_response))

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        monitor = _Monitor("unary", details.method)
        monitor.sent.inc()
        call = continuation(details, request)
        self._when_done(call, monitor, unary_response=True)
        return call

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        monitor = _Monitor("server_stream", details.method)
        monitor.sent.inc()
        call = continuation(details, request)
        self._when_done(call, monitor, unary_response=False)
        return _CountingStream(call, monitor)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        monitor = _Monitor("client_stream", details.method)
        call = continuation(details, monitor.count_sent(iter(requests)))
        self._when_done(call, monitor, unary_response=True)
        return call

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        monitor = _Monitor("bidi_stream", details.method)
        call = continuation(details, monitor.count_sent(iter(requests)))
        self._when_done(call, monitor, unary_response=False)
        return _CountingStream(call, monitor)


def sync_interceptor() -> grpc.UnaryUnaryClientInterceptor:
    """The interceptor of a blocking channel (all four kinds of call)."""
    return _SyncMetrics()


# -- asyncio channels --------------------------------------------------------------------------

# Tasks reading a finished call's status: kept until they end (the loop holds tasks weakly).
_reading: set[asyncio.Task[None]] = set()


def _when_done_async(call: Any, monitor: _Monitor, unary_response: bool) -> None:
    """Counts the call as handled once it ends: an asyncio call's code is a coroutine, read (at
    once, the call being over) by a task the done callback starts."""

    async def read(done: Any) -> None:
        try:
            code = await done.code()
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
        except Exception:
            code = None
        monitor.handled(code, unary_response=unary_response)

    def callback(done: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(read(done))
        except RuntimeError:  # the loop is gone: nothing will scrape this process's metrics
            return
        _reading.add(task)
        task.add_done_callback(_reading.discard)

    call.add_done_callback(callback)


async def _counted(call: Any, monitor: _Monitor) -> AsyncIterator[Any]:
    async for response in call:
        monitor.received.inc()
        yield response


class _AioUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        monitor = _Monitor("unary", details.method)
        monitor.sent.inc()
        call = await continuation(details, request)
        _when_done_async(call, monitor, unary_response=True)
        return call


class _AioUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        monitor = _Monitor("server_stream", details.method)
        monitor.sent.inc()
        call = await continuation(details, request)
        _when_done_async(call, monitor, unary_response=False)
        # gRPC wraps what is returned in a call whose code, details and cancel are this call's.
        return _counted(call, monitor)


class _AioStreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        monitor = _Monitor("client_stream", details.method)
        call = await continuation(details, monitor.count_sent_async(requests))
        _when_done_async(call, monitor, unary_response=True)
        return call


class _AioStreamStream(grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        monitor = _Monitor("bidi_stream", details.method)
        # With interceptors, gRPC turns the caller's write() calls into this iterator, and its
        # read() into iterating what is returned here.
        call = await continuation(details, monitor.count_sent_async(requests))
        _when_done_async(call, monitor, unary_response=False)
        return _counted(call, monitor)


def aio_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """The interceptors of an asyncio channel, one per kind of call."""
    return [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]
