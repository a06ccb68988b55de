"""gRPC metrics on both sides of a call, named as go-grpc-prometheus names them: a real server
built as every service builds it (bootstrap.build_server, its interceptor) and real channels
(panda_runtime.client.channels with metrics on, blocking and asyncio), over a socket, for all
four kinds of RPC. A unary call's request and response count as messages too."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from panda_runtime.client.channels import aio_channel, sync_channel
from panda_runtime.service import bootstrap
from panda_runtime.service.errors import NotFound
from panda_runtime.service.principals import AccessTable
from panda_runtime.settings import ServingSettings

SERVICE = "test.metrics.v1.Echo"
KINDS = {"Unary": "unary", "Fail": "unary", "Server": "server_stream", "Client": "client_stream", "Bidi": "bidi_stream"}


async def _unary(request: bytes, context: Any) -> bytes:
    return request


async def _fail(request: bytes, context: Any) -> bytes:
    raise NotFound("nothing here")


async def _server(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield request


async def _client(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return b"".join([request async for request in requests])


async def _bidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request


def _register(server: grpc.aio.Server) -> None:
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Server": grpc.unary_stream_rpc_method_handler(_server),
        "Client": grpc.stream_unary_rpc_method_handler(_client),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    })])


@dataclass
class _Running:
    address: str
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def echo() -> Iterator[_Running]:
    """The echo service on a real port, served by its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        server, _, port = bootstrap.build_server(
            address="127.0.0.1:0", service_names=[SERVICE], register=_register,
            settings=ServingSettings(auth_mode="none"),
            access=AccessTable({f"/{SERVICE}/{name}": {"authenticated"} for name in KINDS}),
        )
        await server.start()
        holder.update(server=server, port=port, stop=asyncio.Event())
        started.set()
        await holder["stop"].wait()
        await server.stop(None)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10)
    yield _Running(f"127.0.0.1:{holder['port']}", loop)
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(10)


def _value(name: str, method: str, side: str, **labels: str) -> float:
    found = REGISTRY.get_sample_value(
        f"grpc_{side}_{name}", {"grpc_type": KINDS[method], "grpc_service": SERVICE, "grpc_method": method, **labels})
    return found or 0.0


def _snapshot(side: str) -> dict[tuple[str, str], float]:
    names = ["started_total", "msg_received_total", "msg_sent_total", "handling_seconds_count"]
    values = {(name, method): _value(name, method, side) for name in names for method in KINDS}
    for method in KINDS:
        for code in ("OK", "NotFound"):
            values[(f"handled_total:{code}", method)] = _value("handled_total", method, side, grpc_code=code)
    return values


def _delta(before: dict[tuple[str, str], float], side: str) -> dict[tuple[str, str], float]:
    after = _snapshot(side)
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


# What one call of each kind (sending 2 messages on client and bidi streams) counts, on either side.
EXPECTED = {
    ("started_total", "Unary"): 1, ("handled_total:OK", "Unary"): 1, ("handling_seconds_count", "Unary"): 1,
    ("msg_received_total", "Unary"): 1, ("msg_sent_total", "Unary"): 1,
    ("started_total", "Fail"): 1, ("handled_total:NotFound", "Fail"): 1, ("handling_seconds_count", "Fail"): 1,
    ("started_total", "Server"): 1, ("handled_total:OK", "Server"): 1, ("handling_seconds_count", "Server"): 1,
    ("started_total", "Client"): 1, ("handled_total:OK", "Client"): 1, ("handling_seconds_count", "Client"): 1,
    ("started_total", "Bidi"): 1, ("handled_total:OK", "Bidi"): 1, ("handling_seconds_count", "Bidi"): 1,
}
# Messages: the server receives what the client sends, and the other way round. A failed unary
# call's request is received and sent; no response comes back.
SERVER_MESSAGES = {("msg_received_total", "Fail"): 1, ("msg_received_total", "Server"): 1,
                   ("msg_sent_total", "Server"): 3, ("msg_received_total", "Client"): 2,
                   ("msg_sent_total", "Client"): 1, ("msg_received_total", "Bidi"): 2, ("msg_sent_total", "Bidi"): 2}
CLIENT_MESSAGES = {("msg_sent_total", "Fail"): 1, ("msg_sent_total", "Server"): 1,
                   ("msg_received_total", "Server"): 3, ("msg_sent_total", "Client"): 2,
                   ("msg_received_total", "Client"): 1, ("msg_sent_total", "Bidi"): 2,
                   ("msg_received_total", "Bidi"): 2}


def _method(channel: Any, kind: str, name: str) -> Any:
    return getattr(channel, kind)(f"/{SERVICE}/{name}")


def _wait_for(expected: dict[tuple[str, str], float], before: dict[tuple[str, str], float],
              side: str) -> dict[tuple[str, str], float]:
    """The counts once they reach what is expected (an asyncio call's end is counted a moment
    after its caller saw it), or as they are after 10 s."""
    deadline = time.monotonic() + 10
    delta = _delta(before, side)
    while delta != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        delta = _delta(before, side)
    return delta


def test_blocking_channel_counts_every_kind_of_call_on_both_sides(echo: _Running) -> None:
    server_before, client_before = _snapshot("server"), _snapshot("client")
    with sync_channel(echo.address, metrics=True) as channel:
        assert _method(channel, "unary_unary", "Unary")(b"a", timeout=10) == b"a"
        with pytest.raises(grpc.RpcError) as refused:
            _method(channel, "unary_unary", "Fail")(b"a", timeout=10)
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        stream = _method(channel, "unary_stream", "Server")(b"s", timeout=10)
        assert list(stream) == [b"s"] * 3 and stream.code() == grpc.StatusCode.OK
        assert _method(channel, "stream_unary", "Client")(iter([b"x", b"y"]), timeout=10) == b"xy"
        assert list(_method(channel, "stream_stream", "Bidi")(iter([b"1", b"2"]), timeout=10)) == [b"1", b"2"]
    assert _wait_for({**EXPECTED, **SERVER_MESSAGES}, server_before, "server") == {**EXPECTED, **SERVER_MESSAGES}
    assert _wait_for({**EXPECTED, **CLIENT_MESSAGES}, client_before, "client") == {**EXPECTED, **CLIENT_MESSAGES}


def test_asyncio_channel_counts_every_kind_of_call_including_reads_and_writes(echo: _Running) -> None:
    server_before, client_before = _snapshot("server"), _snapshot("client")

    async def calls() -> None:
        async with aio_channel(echo.address, metrics=True) as channel:
            assert await _method(channel, "unary_unary", "Unary")(b"a", timeout=10) == b"a"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _method(channel, "unary_unary", "Fail")(b"a", timeout=10)
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND
            stream = _method(channel, "unary_stream", "Server")(b"s", timeout=10)
            assert [r async for r in stream] == [b"s"] * 3
            assert await stream.code() == grpc.StatusCode.OK
            assert await _method(channel, "stream_unary", "Client")(iter([b"x", b"y"]), timeout=10) == b"xy"
            # The pilot's way: write() and read() on the call itself.
            bidi = _method(channel, "stream_stream", "Bidi")(timeout=10)
            await bidi.write(b"1")
            assert await bidi.read() == b"1"
            await bidi.write(b"2")
            assert await bidi.read() == b"2"
            await bidi.done_writing()
            assert await bidi.read() is grpc.aio.EOF
            assert await bidi.code() == grpc.StatusCode.OK
            await asyncio.sleep(0.1)  # let the last end be counted before the loop closes

    asyncio.run(calls())
    assert _wait_for({**EXPECTED, **SERVER_MESSAGES}, server_before, "server") == {**EXPECTED, **SERVER_MESSAGES}
    assert _wait_for({**EXPECTED, **CLIENT_MESSAGES}, client_before, "client") == {**EXPECTED, **CLIENT_MESSAGES}


def test_a_cancelled_stream_counts_as_cancelled_and_keeps_its_call_methods(echo: _Running) -> None:
    before = _value("handled_total", "Bidi", "client", grpc_code="Canceled")

    def requests() -> Iterator[bytes]:
        yield b"1"
        time.sleep(30)  # never sends more: the caller cancels first

    with sync_channel(echo.address, metrics=True) as channel:
        stream = _method(channel, "stream_stream", "Bidi")(requests(), timeout=20)
        assert next(stream) == b"1"
        assert stream.cancel()
        with pytest.raises(grpc.RpcError):
            next(stream)
        assert stream.code() == grpc.StatusCode.CANCELLED
    deadline = time.monotonic() + 10
    while _value("handled_total", "Bidi", "client", grpc_code="Canceled") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _value("handled_total", "Bidi", "client", grpc_code="Canceled") == before + 1


def test_channels_without_metrics_count_nothing(echo: _Running) -> None:
    before = _snapshot("client")
    with sync_channel(echo.address) as channel:
        assert _method(channel, "unary_unary", "Unary")(b"a", timeout=10) == b"a"
    assert _delta(before, "client") == {}
