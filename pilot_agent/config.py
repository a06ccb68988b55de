"""What a pilot is told when it starts (its queue, its server, its work dir, what it offers
and its limits: `panda pilot --help` sets these), what the node offers, and the clock of its
lifetime."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from panda.common.v1 import resources_pb2
from panda_runtime.client.credentials import TokenSource

__all__ = ["Lifetime", "PilotConfig", "make_pilot_id"]


def make_pilot_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class PilotConfig:
    queue: str
    server: str
    workdir: Path
    cores: int = 0  # 0: os.cpu_count()
    memory_mb: int = 0  # 0: the node's total memory
    disk_mb: int = 0  # 0: free space of the work dir, measured each time
    lifetime: float = 86400.0
    idle_timeout: float = 300.0
    heartbeat_interval: float = 0.0  # 0: the server's (Welcome)
    looping_timeout: float = 7200.0
    max_jobs: int = 0  # 0: no limit
    worker_id: str = ""
    pilot_id: str = ""
    monitor_interval: float = 5.0
    kill_grace: float = 10.0
    # Where the bearer token of every stream comes from (None: calls go without one).
    tokens: TokenSource | None = None

    def free_disk_mb(self) -> int:
        """The disk offered: as configured, else the work dir's free space now."""
        if self.disk_mb:
            return self.disk_mb
        try:
            return shutil.disk_usage(self.workdir).free // (1024 * 1024)
        except OSError:
            return 0

    def offer(self, walltime_seconds: float) -> resources_pb2.Resources:
        """What the node offers, for this long."""
        return resources_pb2.Resources(
            cores=self.cores or os.cpu_count() or 1,
            memory_mb=self.memory_mb or psutil.virtual_memory().total // (1024 * 1024),
            disk_mb=self.free_disk_mb(),
            walltime_seconds=int(walltime_seconds),
        )


@dataclass
class Lifetime:
    """How long the pilot has left, and how much of it jobs may use: a reserve is kept back
    from a job's walltime for stage-out and the final report."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return max(0.0, self.started + self.seconds - time.monotonic())

    @property
    def reserve(self) -> float:
        return min(60.0, self.seconds * 0.1)

    def for_jobs(self) -> float:
        return max(0.0, self.remaining() - self.reserve)
