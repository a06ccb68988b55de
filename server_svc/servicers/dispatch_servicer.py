"""DispatchService.Connect: one bidirectional stream per pilot (see the proto for the protocol)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import grpc

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import dispatch_service_pb2_grpc
from panda_runtime.service.errors import InvalidArgument, NotFound, PermissionDenied
from panda_runtime.service.principals import current_principal
from panda_runtime.service.timestamps import timestamp
from server_svc.domain.pilots import PilotClaim
from server_svc.logic.dispatch_hub import DispatchHub, Session
from server_svc.logic.pilots import PilotRegistry
from server_svc.logic.queues import QueueOperations
from server_svc.servicers.convert import hello_from_proto, outgoing_to_proto, request_from_proto, updates_from_proto
from server_svc.servicers.dispatch_checks import check_goodbye, check_hello, check_request, check_updates
from server_svc.settings import ServerSettings

__all__ = ["DispatchServicer"]

log = logging.getLogger("panda.dispatch")


class DispatchServicer(dispatch_service_pb2_grpc.DispatchServiceServicer):
    def __init__(
        self, settings: ServerSettings, queues: QueueOperations, hub: DispatchHub, pilots: PilotRegistry
    ) -> None:
        self._settings = settings
        self._queues = queues
        self._hub = hub
        self._pilots = pilots

    async def Connect(
        self, request_iterator: AsyncIterator[dispatch_pb2.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[dispatch_pb2.ConnectResponse]:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        if first.WhichOneof("message") != "hello":
            raise InvalidArgument("the first message on the stream must be a hello", field="hello")
        hello = first.hello
        check_hello(hello)
        principal = current_principal()
        if not principal.may_serve_queue(hello.queue):
            allowed = ", ".join(sorted(principal.queues)) or "none"
            raise PermissionDenied(
                f"{principal.subject} may not serve queue {hello.queue} (its token allows: {allowed})"
            )
        if not await self._queues.exists(hello.queue):
            raise NotFound(f"queue {hello.queue} not found", resource_type="queue", resource_name=hello.queue)
        admission = await self._pilots.admit(
            PilotClaim(hello.pilot_id, hello.resume_secret, principal.subject, hello.queue, hello.node)
        )
        session = await self._hub.connect(
            hello_from_proto(hello, admission.pilot_id, principal.subject, principal.served_queues)
        )
        reader = asyncio.create_task(self._read(request_iterator, session))
        try:
            yield dispatch_pb2.ConnectResponse(
                welcome=dispatch_pb2.Welcome(
                    session_id=session.session_id,
                    heartbeat_interval_seconds=self._settings.heartbeat_interval_seconds,
                    server_time=timestamp(datetime.now(UTC)),
                    pilot_id=admission.pilot_id,
                    resume_secret=admission.resume_secret,
                )
            )
            while True:
                message = await session.outbox.get()
                if message is None:
                    return
                if isinstance(message, BaseException):
                    raise message
                yield outgoing_to_proto(message)
        finally:
            reader.cancel()
            self._hub.disconnect(session)

    async def _read(self, requests: AsyncIterator[dispatch_pb2.ConnectRequest], session: Session) -> None:
        try:
            async for request in requests:
                session.hear()
                kind = request.WhichOneof("message")
                if kind == "request_jobs":
                    check_request(request.request_jobs, "request_jobs")
                    self._hub.request_jobs(session, request_from_proto(request.request_jobs))
                elif kind == "job_updates":
                    check_updates(request.job_updates)
                    parsed = updates_from_proto(request.job_updates.updates, session.pilot_id, session.queues)
                    then_request = (
                        request_from_proto(request.job_updates.request_jobs)
                        if request.job_updates.HasField("request_jobs") else None
                    )
                    self._hub.submit_updates(session, request.seq, parsed, then_request)
                elif kind == "goodbye":
                    check_goodbye(request.goodbye)
                    log.info("pilot %s says goodbye: %s", session.pilot_id, request.goodbye.reason)
                    await self._hub.goodbye(session)
                    break
                elif kind == "hello":
                    session.end(InvalidArgument("hello was already sent on this stream", field="hello"))
                    return
        except InvalidArgument as error:
            # This stream alone ends; nothing of the bad message reached a round.
            log.warning("closing the stream of pilot %s: %s", session.pilot_id, error.message)
            session.end(error)
            return
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        except Exception as error:  # keep the stream's end orderly whatever went wrong
            log.exception("reading the stream of pilot %s failed", session.pilot_id)
            session.end(error)
            return
        session.end()
