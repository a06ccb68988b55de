"""The relay: harvester's DispatchService, for pilots on worker nodes with no route to the
server. A pilot started with only harvester's address connects here as to the server (the same
contract: it cannot tell the difference); each of its streams is forwarded, message by message
and both ways, over a stream harvester opens to the server with its own credentials. Kill
commands, acknowledgements and the stream's end pass through as they come, so a relayed job
behaves exactly as a direct one: a pilot that goes silent goes silent at the server too.

A relayed pilot proves itself with its worker's relay token (`domain.relay_tokens`): it is
admitted only as the pilot of that worker, on that worker's queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from harvester_svc.domain.relay_tokens import worker_of
from harvester_svc.domain.workers import FINAL_STATES, WorkerRecord
from harvester_svc.logic.server_link import DispatchCall, ServerLink
from panda.server.v1 import dispatch_service_pb2, dispatch_service_pb2_grpc
from panda_runtime.service.auth import bearer_token
from panda_runtime.service.errors import InvalidArgument, PermissionDenied, ServiceError, Unauthenticated
from panda_runtime.service.principals import ANY_VO, PILOT, AccessTable, Principal, current_principal

__all__ = ["RELAY_ACCESS", "RelayAuthenticator", "RelayServicer"]

log = logging.getLogger("panda.harvester.relay")

RELAY_ACCESS = AccessTable({"/panda.server.v1.DispatchService/Connect": {PILOT}})
_WORKER_PREFIX = "worker:"


class RelayAuthenticator:
    """Admits a worker's relay token while the worker is live, as that worker's pilot."""

    def __init__(self, key: bytes, find_worker: Callable[[str], Awaitable[WorkerRecord | None]]) -> None:
        self._key = key
        self._find_worker = find_worker

    async def authenticate(self, method: str, metadata: Sequence[tuple[str, str | bytes]],
                           context: grpc.aio.ServicerContext | None) -> Principal:
        token = bearer_token(metadata)
        if token is None:
            raise Unauthenticated("the relay needs the worker's relay token (PANDA_TOKEN)")
        worker_id = worker_of(self._key, token)
        if worker_id is None:
            raise Unauthenticated("not a relay token of this harvester")
        worker = await self._find_worker(worker_id)
        if worker is None or worker.state in FINAL_STATES:
            raise PermissionDenied(f"worker {worker_id} is not a live worker of this harvester")
        return Principal(subject=f"{_WORKER_PREFIX}{worker_id}", grants=frozenset({(ANY_VO, PILOT)}),
                         queues=frozenset({worker.queue}))


class RelayServicer(dispatch_service_pb2_grpc.DispatchServiceServicer):
    def __init__(self, link: ServerLink) -> None:
        self._link = link

    async def Connect(
        self, request_iterator: AsyncIterator[dispatch_service_pb2.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[dispatch_service_pb2.ConnectResponse]:
        caller = current_principal()
        worker_id = caller.subject.removeprefix(_WORKER_PREFIX)
        upstream = self._link.open_dispatch()
        forwarding: asyncio.Task[None] | None = asyncio.create_task(
            self._forward(request_iterator, upstream, worker_id, caller))
        responses = upstream.__aiter__()
        try:
            while True:
                next_response = asyncio.ensure_future(responses.__anext__())
                waiting = {next_response} if forwarding is None else {next_response, forwarding}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if forwarding is not None and forwarding in done:
                    problem = forwarding.exception()
                    forwarding = None
                    if problem is not None:
                        next_response.cancel()
                        raise problem
                if next_response not in done:  # the pilot is done sending; its answers still come
                    await asyncio.wait({next_response})
                try:
                    response = next_response.result()
                except StopAsyncIteration:
                    return
                yield response
        except grpc.aio.AioRpcError as error:
            # The server's refusal, passed on as it is: the pilot acts on it as on a direct one.
            await context.abort(error.code(), error.details() or "")
        except ServiceError as error:
            await context.abort(error.code, error.message)
        finally:
            if forwarding is not None:
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await forwarding
            upstream.cancel()

    @staticmethod
    async def _forward(requests: AsyncIterator[dispatch_service_pb2.ConnectRequest],
                       upstream: DispatchCall,
                       worker_id: str, caller: Principal) -> None:
        async for request in requests:
            if request.WhichOneof("message") == "hello":
                hello = request.hello
                # A relayed pilot is its worker's pilot, on its worker's queue, and nobody else's.
                if hello.worker_id and hello.worker_id != worker_id:
                    raise InvalidArgument(f"hello.worker_id: this stream is worker {worker_id}'s")
                if hello.queue not in caller.queues:
                    raise PermissionDenied(f"hello.queue: worker {worker_id} serves queue "
                                           f"{next(iter(caller.queues))}, not {hello.queue}")
                hello.worker_id = worker_id
            await upstream.write(request)
        await upstream.done_writing()

