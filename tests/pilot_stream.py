"""A pilot's stream driven by hand, message by message, for protocol tests. It calls as the
session's pilot robot, whatever token the channel carries. Its Hello suggests a name; the server
issues the pilot's id (`pilot_id`, with `resume_secret` to reconnect as that pilot)."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator

import grpc

from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda.server.v1 import dispatch_service_pb2_grpc, job_pb2
from tools.cluster import session_identity

_END = object()


class PilotStream:
    def __init__(self, channel: grpc.Channel, pilot_id: str, queue_id: str = "local", *,
                 held: list[tuple[int, int]] | None = None, cores: int = 0, token: str | None = None,
                 resume_secret: str = "", node: str = "test-node", worker_id: str = "") -> None:
        self._welcome: dispatch_pb2.Welcome | None = None
        self._welcomed = threading.Event()
        self._outgoing: queue.Queue[object] = queue.Queue()
        self._incoming: queue.Queue[dispatch_pb2.ConnectResponse | grpc.RpcError | None] = queue.Queue()
        self._seq = itertools.count(1)
        self.send(hello=dispatch_pb2.Hello(
            pilot_id=pilot_id, queue=queue_id, node=node,
            resources=resources_pb2.Resources(cores=cores),
            held_jobs=[dispatch_pb2.HeldJob(job_id=j, attempt=a) for j, a in (held or [])],
            resume_secret=resume_secret, worker_id=worker_id,
        ))
        stub = dispatch_service_pb2_grpc.DispatchServiceStub(channel)
        token = token if token is not None else session_identity().pilot_token()
        self._call = stub.Connect(self._requests(), timeout=120, metadata=[("authorization", f"Bearer {token}")])
        threading.Thread(target=self._read, daemon=True).start()

    def _requests(self) -> Iterator[dispatch_pb2.ConnectRequest]:
        while True:
            item = self._outgoing.get()
            if item is _END:
                return
            yield item  # type: ignore[misc]

    @property
    def welcome(self) -> dispatch_pb2.Welcome:
        """The server's Welcome (waited for)."""
        if not self._welcomed.wait(15):
            raise TimeoutError("no Welcome")
        assert self._welcome is not None
        return self._welcome

    @property
    def pilot_id(self) -> str:
        """The id the server issued (or resumed)."""
        return self.welcome.pilot_id

    @property
    def resume_secret(self) -> str:
        return self.welcome.resume_secret

    def _read(self) -> None:
        try:
            for message in self._call:
                if message.WhichOneof("message") == "welcome":
                    self._welcome = message.welcome
                    self._welcomed.set()
                if message.WhichOneof("message") == "update_acks":
                    # One ack per message for the tests, however the server grouped them.
                    for ack in message.update_acks.acks:
                        alone = dispatch_pb2.UpdateAcks(acks=[ack])
                        self._incoming.put(dispatch_pb2.ConnectResponse(update_acks=alone))
                    continue
                self._incoming.put(message)
        except grpc.RpcError as error:
            self._incoming.put(error)
            return
        self._incoming.put(None)

    def send(self, **message: object) -> int:
        seq = next(self._seq)
        self._outgoing.put(dispatch_pb2.ConnectRequest(seq=seq, **message))  # type: ignore[arg-type]
        return seq

    def request_jobs(self, count: int = 1) -> None:
        self.send(request_jobs=dispatch_pb2.RequestJobs(count=count))

    def update(self, job_id: int, attempt: int, state: int, **fields: object) -> int:
        """One update: a JobUpdates of one."""
        return self.update_many([dispatch_pb2.JobUpdate(job_id=job_id, attempt=attempt, state=state, **fields)])

    def update_many(self, updates: list[dispatch_pb2.JobUpdate], *, then_request: int | None = None) -> int:
        """Updates in one message; with `then_request`, the next request goes with them."""
        request = dispatch_pb2.RequestJobs(count=then_request) if then_request is not None else None
        return self.send(job_updates=dispatch_pb2.JobUpdates(updates=updates, request_jobs=request))

    def next(self, kind: str, timeout: float = 15.0) -> dispatch_pb2.ConnectResponse:
        """The next message of `kind` (welcome, job_assignments, update_acks, command); an
        update_acks here holds one ack, however the server grouped them."""
        while True:
            message = self._incoming.get(timeout=timeout)
            if isinstance(message, grpc.RpcError):
                raise message
            if message is None:
                raise EOFError("the server ended the stream")
            if message.WhichOneof("message") == kind:
                return message

    def next_ack(self, timeout: float = 15.0) -> dispatch_pb2.UpdateAck:
        """The next acknowledgement sent alone or in UpdateAcks (not those that come with jobs)."""
        return self.next("update_acks", timeout).update_acks.acks[0]

    def next_job(self, timeout: float = 15.0) -> job_pb2.Job:
        return self.next("job_assignments", timeout).job_assignments.jobs[0]

    def ended_with(self, timeout: float = 15.0) -> grpc.RpcError | None:
        """Wait for the stream to end; the error it ended with, or None."""
        while True:
            message = self._incoming.get(timeout=timeout)
            if isinstance(message, grpc.RpcError):
                return message
            if message is None:
                return None

    def close(self) -> None:
        self._outgoing.put(_END)
        self._call.cancel()
