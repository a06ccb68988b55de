"""The Connect stream over files, for a pilot with no network at all (harvester's shared-file
messenger): `--server file:DIR`, DIR being a directory on a file system harvester shares.

Each stream is a directory of its own under DIR, `stream-<time>-<random>`, made by the pilot (or
by harvester for the pilot to adopt: a push queue's first stream, its jobs already in it); in
it `up/` holds the pilot's messages (ConnectRequest) and `down/` harvester's (ConnectResponse),
one file each, numbered in order, written under a temporary name and renamed into place so a
reader never sees half a message; the messages are protobuf's JSON, so a person can read them.
`up/end` says the pilot is done writing; `down/end` carries the stream's end status (a
`google.rpc.Status` in JSON: OK, or why harvester or the server ended it). Harvester forwards
every message to the server over a stream of its own and writes back what the server answers:
a job request, the job definitions, heartbeats, the final report and the kill command are the
messages a direct pilot sends and gets.

`FileStream` has the methods of the gRPC call the pilot uses (write, done_writing, read, cancel),
and its errors are gRPC's own, so the pilot cannot tell the difference."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import grpc
from google.protobuf import json_format
from google.rpc import status_pb2

from panda.server.v1 import dispatch_service_pb2 as dispatch_pb2

__all__ = ["END", "FILE_SCHEME", "POLL_SECONDS", "PREPARED", "FileStream", "is_file_address", "message_name",
           "read_message", "write_message"]

FILE_SCHEME = "file:"
# How often a reader looks for the next message: a shared file system gives no notice.
POLL_SECONDS = 0.1
END = "end"
# A stream directory harvester opened for the pilot to take over, and the mark of the pilot that did.
PREPARED = "prepared"
ADOPTED = "adopted"


def is_file_address(server: str) -> bool:
    return server.startswith(FILE_SCHEME)


def message_name(number: int) -> str:
    return f"{number:012d}.json"


def write_message(directory: Path, name: str, text: str) -> None:
    """Writes `name` in `directory` at once: under a temporary name, then renamed into place."""
    temporary = directory / f".{name}.{secrets.token_hex(4)}.tmp"
    temporary.write_text(text)
    os.replace(temporary, directory / name)


def read_message(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _adopt_prepared(root: Path) -> Path | None:
    """A stream harvester opened for this worker's pilot (a push queue's: its Welcome and jobs are
    waiting in it), taken by this pilot alone."""
    try:
        candidates = sorted(path for path in root.iterdir() if path.name.startswith("stream-"))
    except FileNotFoundError:
        return None
    for directory in candidates:
        if not (directory / PREPARED).exists() or (directory / "down" / END).exists():
            continue
        try:
            os.close(os.open(directory / ADOPTED, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return directory
    return None


def _new_stream(root: Path) -> Path:
    directory = root / f"stream-{time.time_ns()}-{secrets.token_hex(4)}"
    # Made whole before harvester may see it: `up/` and `down/` first, the stream directory last.
    staging = root / f".{directory.name}.tmp"
    (staging / "up").mkdir(parents=True)
    (staging / "down").mkdir()
    os.replace(staging, directory)
    return directory


class FileStream:
    """One Connect stream, through the directory `root` shares with harvester."""

    def __init__(self, root: Path) -> None:
        self.directory = _adopt_prepared(root) or _new_stream(root)
        self._up = self.directory / "up"
        self._down = self.directory / "down"
        self._sent = 0
        self._received = 0
        self._ended = False

    async def write(self, request: dispatch_pb2.ConnectRequest) -> None:
        if self._ended:
            raise grpc.aio.UsageError("the stream has ended")
        self._sent += 1
        write_message(self._up, message_name(self._sent), json_format.MessageToJson(request, indent=None))

    async def done_writing(self) -> None:
        write_message(self._up, END, "")

    async def read(self) -> dispatch_pb2.ConnectResponse | object:
        """The next message; grpc.aio.EOF when harvester ended the stream with OK; its error else."""
        next_path = self._down / message_name(self._received + 1)
        while True:
            text = read_message(next_path)
            if text is not None:
                self._received += 1
                response = dispatch_pb2.ConnectResponse()
                json_format.Parse(text, response)
                return response
            end = read_message(self._down / END)
            if end is not None and read_message(next_path) is None:
                self._ended = True
                status = json_format.Parse(end, status_pb2.Status()) if end.strip() else status_pb2.Status()
                if status.code == grpc.StatusCode.OK.value[0]:
                    return grpc.aio.EOF
                code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
                raise grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=status.message)
            await asyncio.sleep(POLL_SECONDS)

    def cancel(self) -> bool:
        if not self._ended:
            self._ended = True
            write_message(self._up, END, "")
        return True
