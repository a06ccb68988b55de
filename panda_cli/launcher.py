"""Starting PanDA mesh's processes: the one way `panda up`, the test clusters and the benchmarks
start a service or a pilot, wait until it answers, and stop it.

Every process runs in a process group of its own (a new session), so a terminal's Ctrl-C reaches
only whoever started it, and stopping it signals that group only: the process and what it
started (a pilot's payloads), never anything found by name. Its output goes to a log file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from panda_runtime.client.channels import sync_channel

__all__ = [
    "GATEWAY",
    "HARVESTER",
    "IAM",
    "JEDI",
    "PILOT",
    "SERVER",
    "Component",
    "Process",
    "StopRequested",
    "Supervisor",
    "health_status",
    "http_ready",
    "log_tail",
    "spawn",
    "wait_healthy",
    "wait_http_ready",
    "wait_ready",
]


@dataclass(frozen=True)
class Component:
    """A part of the mesh that runs as a process of its own: `python -m <module>`."""

    name: str
    module: str
    # For messages: "waiting for the server ...".
    what: str

    def argv(self, *arguments: str) -> list[str]:
        return [sys.executable, "-m", self.module, *arguments]


SERVER = Component("server", "server_svc", "the server")
JEDI = Component("jedi", "jedi_svc", "JEDI")
IAM = Component("iam", "iam_svc", "the identity service")
PILOT = Component("pilot", "pilot_agent", "the pilot")
GATEWAY = Component("gateway", "monitor_gateway", "the gateway")
HARVESTER = Component("harvester", "harvester_svc", "harvester")


@dataclass(eq=False)
class Process:
    """A child in a process group of its own, with its log."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes]
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        """Signal the process's group: the group was made for it, so it holds only the process
        and what it started; one that is already gone is fine."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, and SIGKILL for the group if it has not ended within `timeout`."""
        if self.alive():
            self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.popen.wait(timeout)
        finally:
            self.close_log()

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path, *, inherit: bool = True) -> Process:
    """Start `argv` in a new session with its output appended to `log_path`; `env` is added to
    this process's environment (or is the whole of it when not `inherit`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "ab")  # noqa: SIM115 - open for the child's lifetime, closed by stop()
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    log_file.write(f"\n=== {stamp} starting {name}: {' '.join(argv)}\n".encode())
    log_file.flush()
    popen = subprocess.Popen(
        list(argv), env={**os.environ, **env} if inherit else dict(env), stdin=subprocess.DEVNULL,
        stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    return Process(name, list(argv), log_path, popen, log_file)


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for a message about the process that wrote it."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def health_status(address: str, timeout: float = 1.0, tls: grpc.ChannelCredentials | None = None) -> int | None:
    """The overall gRPC health status of whatever listens at `address`, or None when nothing answers."""
    with sync_channel(address, tls=tls) as channel:
        # The type stubs of grpcio-health-checking leave out the client stub's methods.
        health: Any = health_pb2_grpc.HealthStub(channel)
        try:
            return int(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout).status)
        except grpc.RpcError:
            return None


def http_ready(url: str, timeout: float = 1.0) -> bool:
    """Whether an HTTP service (the gateway) answers its `/healthz` at `url` with 200."""
    try:
        return httpx.get(url.rstrip("/") + "/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(
    process: Process | None,
    ready: Callable[[], bool],
    where: str,
    timeout: float = 30.0,
    *,
    pause: Callable[[float], None] = time.sleep,
    progress: Callable[[float], None] | None = None,
) -> float:
    """Wait until `ready()` says so; the seconds it took. RuntimeError when `process` ends first,
    TimeoutError after `timeout`. `pause` sleeps between checks (a supervisor's may raise
    StopRequested); `progress` hears the seconds so far."""
    start = time.monotonic()
    while True:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited with {process.returncode} before it was healthy")
        if ready():
            return time.monotonic() - start
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            raise TimeoutError(f"nothing healthy at {where} after {timeout:.0f} s")
        if progress is not None:
            progress(elapsed)
        pause(0.1 if elapsed < 2 else 0.25)


def wait_healthy(
    process: Process | None,
    address: str,
    timeout: float = 30.0,
    *,
    tls: grpc.ChannelCredentials | None = None,
    pause: Callable[[float], None] = time.sleep,
    progress: Callable[[float], None] | None = None,
) -> float:
    """`wait_ready` for a gRPC service: until its health check at `address` says SERVING."""
    return wait_ready(process, lambda: health_status(address, tls=tls) == health_pb2.HealthCheckResponse.SERVING,
                      address, timeout, pause=pause, progress=progress)


def wait_http_ready(
    process: Process | None,
    url: str,
    timeout: float = 30.0,
    *,
    pause: Callable[[float], None] = time.sleep,
    progress: Callable[[float], None] | None = None,
) -> float:
    """`wait_ready` for an HTTP service: until its `/healthz` at `url` answers 200."""
    return wait_ready(process, lambda: http_ready(url), url, timeout, pause=pause, progress=progress)


class StopRequested(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: whoever supervises stops everything."""


class Supervisor:
    """Starts children, notices one dying, and stops them all in the order given, on a signal
    or when told."""

    def __init__(self, stop_timeout: float) -> None:
        self.stop_timeout = stop_timeout
        self.children: list[Process] = []
        self.stop_event = threading.Event()
        self.hurry = threading.Event()  # a second signal while stopping: SIGKILL at once
        self.signal_name = ""
        self._previous_handlers: dict[int, signal._HANDLER] = {}

    def install_signal_handlers(
        self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    ) -> None:
        for signum in signals:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_event.is_set():
            self.hurry.set()
        else:
            self.signal_name = signal.Signals(signum).name
            self.stop_event.set()

    def check_stop(self) -> None:
        if self.stop_event.is_set():
            raise StopRequested

    def sleep(self, seconds: float) -> None:
        """Sleep that ends early, with StopRequested, when a signal asks us to stop."""
        if self.stop_event.wait(seconds):
            raise StopRequested

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> Process:
        """A child with exactly `env` as its environment."""
        child = spawn(name, argv, env, log_path, inherit=False)
        self.children.append(child)
        return child

    def dead_child(self) -> Process | None:
        return next((child for child in self.children if not child.alive()), None)

    def stop(self, stages: Sequence[tuple[str, Sequence[Process]]]) -> None:
        """Stop each stage's children (SIGTERM, then SIGKILL after the timeout), one stage after
        the other, saying what it stops."""
        for what, children in stages:
            living = [child for child in children if child.alive()]
            if living:
                print(f"stopping {what}...", flush=True)
                self._terminate(living)
        for child in self.children:
            child.close_log()

    def _terminate(self, children: Sequence[Process]) -> None:
        for child in children:
            child.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(c.alive() for c in children) and time.monotonic() < deadline and not self.hurry.is_set():
            time.sleep(0.1)
        for child in children:
            if child.alive():
                print(f"{child.name} (pid {child.pid}) did not stop in time: killing it", flush=True)
                child.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=5)
            else:
                # The group may still hold processes the child left behind (e.g. a payload).
                child.signal(signal.SIGKILL)
