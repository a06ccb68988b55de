"""The shared-file messenger: harvester's side of `pilot_agent.file_stream`, for worker nodes
with no network at all. Each stream directory a pilot makes in its worker's `messenger/`
directory is served by forwarding its messages to the server over a stream harvester opens with
its own credentials, and writing back, one file each, what the server answers; the stream's end
(the server's, or harvester's when it cannot go on) is written as `down/end`.

For push queues this is also the job fetcher: before a worker is submitted, harvester opens its
first stream itself (Hello as the worker's pilot, then a request for the worker's jobs) and
leaves the Welcome and the job definitions in a prepared stream directory, which the worker's
pilot adopts when it starts. A worker that got no job is not submitted.

Streams left open by a harvester that stopped have no stream to the server any more: a
restarted harvester ends them (UNAVAILABLE) and the pilot opens a new one, resuming its identity
as it does after any lost stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from harvester_svc.domain.workers import WorkerRecord
from harvester_svc.logic.server_link import DispatchCall, ServerLink
from panda.common.v1 import resources_pb2
from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2
from panda_runtime.client.file_stream import END, POLL_SECONDS, PREPARED, message_name, read_message, write_message

__all__ = ["MESSENGER_DIR", "FileRelay", "messenger_address"]

log = logging.getLogger("panda.harvester.files")

MESSENGER_DIR = "messenger"
# How long the job fetcher waits for the server's Welcome, then for the jobs.
FETCH_TIMEOUT_SECONDS = 10.0


def messenger_address(access_point: str) -> str:
    """What a shared-file worker's pilot is given as its server address."""
    return f"file:{access_point}/{MESSENGER_DIR}"


class FileRelay:
    def __init__(self, link: ServerLink) -> None:
        self._link = link
        self._sessions: dict[Path, asyncio.Task[None]] = {}
        # The job fetcher's streams, by worker, until the worker is submitted or given up.
        self._fetched: dict[str, DispatchCall] = {}

    async def close(self) -> None:
        for task in self._sessions.values():
            task.cancel()
        await asyncio.gather(*self._sessions.values(), return_exceptions=True)
        self._sessions.clear()

    # ---- the job fetcher -------------------------------------------------------------------------------

    async def prefetch(self, worker: WorkerRecord, jobs: int) -> int:
        """Opens the worker's first stream as its pilot and asks for `jobs` jobs; how many came (the
        stream stays open for the pilot; with none, it is closed and left for the sweeper)."""
        root = Path(worker.access_point) / MESSENGER_DIR
        directory = await asyncio.to_thread(_make_stream_dir, root, "stream-0-fetched")
        upstream = self._link.open_dispatch()
        hello = dispatch_pb2.Hello(
            pilot_id=worker.worker_id, queue=worker.queue, worker_id=worker.worker_id, version="harvester",
            resources=resources_pb2.Resources(cores=worker.cores, memory_mb=worker.memory_mb,
                                              walltime_seconds=worker.walltime_seconds))
        try:
            await upstream.write(dispatch_pb2.ConnectRequest(seq=1, hello=hello))
            welcome = await asyncio.wait_for(upstream.read(), FETCH_TIMEOUT_SECONDS)
            if not isinstance(welcome, dispatch_pb2.ConnectResponse) or welcome.WhichOneof("message") != "welcome":
                raise ConnectionError("the server did not answer the job fetcher's Hello with Welcome")
            _write_down(directory, 1, welcome)
            await upstream.write(dispatch_pb2.ConnectRequest(seq=2, request_jobs=dispatch_pb2.RequestJobs(count=jobs)))
            try:
                assigned = await asyncio.wait_for(upstream.read(), FETCH_TIMEOUT_SECONDS)
            except TimeoutError:
                assigned = None
            if not isinstance(assigned, dispatch_pb2.ConnectResponse) or \
                    assigned.WhichOneof("message") != "job_assignments":
                await upstream.write(dispatch_pb2.ConnectRequest(
                    seq=3, goodbye=dispatch_pb2.Goodbye(reason="no job for this worker")))
                await upstream.done_writing()
                upstream.cancel()
                return 0
            _write_down(directory, 2, assigned)
        except (grpc.aio.AioRpcError, TimeoutError, ConnectionError) as error:
            upstream.cancel()
            log.warning("worker %s: cannot fetch its jobs: %s", worker.worker_id, error)
            return 0
        self._start(directory, worker, upstream, sent=2, hello_sent=True)
        self._fetched[worker.worker_id] = upstream
        return len(assigned.job_assignments.jobs)

    def submitted(self, worker_id: str) -> None:
        """The worker is in the batch system: its pilot takes its fetched jobs over."""
        self._fetched.pop(worker_id, None)

    async def release(self, worker_id: str) -> None:
        """The worker will never run (its submission failed): its fetched jobs go back to the
        server, which hands them to another pilot (Goodbye returns jobs not yet started)."""
        upstream = self._fetched.pop(worker_id, None)
        if upstream is None:
            return
        with contextlib.suppress(grpc.aio.AioRpcError, grpc.aio.UsageError):
            await upstream.write(dispatch_pb2.ConnectRequest(
                seq=3, goodbye=dispatch_pb2.Goodbye(reason="the worker could not be submitted")))
            await upstream.done_writing()

    # ---- serving the pilots' streams --------------------------------------------------------------------

    async def serve(self, workers: Iterable[WorkerRecord]) -> None:
        """Starts a session for every stream directory of these live workers that has none, and
        ends the sessions of workers no longer among them."""
        live: set[Path] = set()
        for worker in workers:
            root = Path(worker.access_point) / MESSENGER_DIR
            live.add(root)
            for directory in await asyncio.to_thread(_open_streams, root):
                if directory not in self._sessions:
                    self._start(directory, worker, self._link.open_dispatch(), sent=0, hello_sent=False)
        for directory, task in list(self._sessions.items()):
            if directory.parent not in live:
                task.cancel()

    async def end_orphans(self, workers: Iterable[WorkerRecord]) -> None:
        """Ends the streams a stopped harvester left open: nothing forwards them any more."""
        for worker in workers:
            for directory in await asyncio.to_thread(_open_streams, Path(worker.access_point) / MESSENGER_DIR):
                await asyncio.to_thread(_write_end, directory, grpc.StatusCode.UNAVAILABLE,
                                        "harvester restarted; open a new stream")

    def _start(self, directory: Path, worker: WorkerRecord, upstream: DispatchCall,
               *, sent: int, hello_sent: bool) -> None:
        task = asyncio.create_task(self._session(directory, worker, upstream, sent, hello_sent),
                                   name=f"files-{directory.name}")
        self._sessions[directory] = task
        task.add_done_callback(lambda _: self._sessions.pop(directory, None))

    async def _session(self, directory: Path, worker: WorkerRecord, upstream: DispatchCall,
                       sent: int, hello_sent: bool) -> None:
        forwarding = asyncio.create_task(self._forward_up(directory, worker, upstream, hello_sent))
        status, message = grpc.StatusCode.OK, ""
        try:
            while True:
                response = await upstream.read()
                if not isinstance(response, dispatch_pb2.ConnectResponse):  # the server ended the stream
                    break
                sent += 1
                await asyncio.to_thread(_write_down, directory, sent, response)
        except grpc.aio.AioRpcError as error:
            status, message = error.code(), error.details() or ""
        except asyncio.CancelledError:
            status, message = grpc.StatusCode.UNAVAILABLE, "harvester is stopping; open a new stream"
            raise
        finally:
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await forwarding
            upstream.cancel()
            with contextlib.suppress(OSError):
                _write_end(directory, status, message)

    @staticmethod
    async def _forward_up(directory: Path, worker: WorkerRecord, upstream: DispatchCall,
                          hello_sent: bool) -> None:
        up = directory / "up"
        number = 0
        while True:
            path = up / message_name(number + 1)
            text = await asyncio.to_thread(read_message, path)
            if text is None:
                if await asyncio.to_thread(read_message, up / END) is not None and \
                        await asyncio.to_thread(read_message, path) is None:
                    await upstream.done_writing()
                    return
                await asyncio.sleep(POLL_SECONDS)
                continue
            number += 1
            request = json_format.Parse(text, dispatch_pb2.ConnectRequest())
            if request.WhichOneof("message") == "hello":
                # The pilot speaks for its own worker on its worker's queue, as a relayed one does.
                request.hello.worker_id = worker.worker_id
                request.hello.queue = worker.queue
                if hello_sent:
                    continue  # the job fetcher said Hello for it; the pilot adopts that stream
            await upstream.write(request)


def _make_stream_dir(root: Path, name: str) -> Path:
    """A prepared stream directory, whole before the pilot may see it."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{name}.tmp"
    (staging / "up").mkdir(parents=True, exist_ok=True)
    (staging / "down").mkdir(exist_ok=True)
    (staging / PREPARED).write_text("")
    directory = root / name
    os.replace(staging, directory)
    return directory


def _open_streams(root: Path) -> list[Path]:
    """Stream directories under `root` that harvester has not ended."""
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return []
    return [entry for entry in entries if entry.name.startswith("stream-") and entry.is_dir()
            and not (entry / "down" / END).exists()]


def _write_down(directory: Path, number: int, response: dispatch_pb2.ConnectResponse) -> None:
    write_message(directory / "down", message_name(number), json_format.MessageToJson(response, indent=None))


def _write_end(directory: Path, code: grpc.StatusCode, message: str) -> None:
    status = status_pb2.Status(code=code.value[0], message=message)
    write_message(directory / "down", END, json_format.MessageToJson(status, indent=None))
