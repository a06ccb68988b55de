"""What a pilot is told when it starts: its queue, its server, its work dir, what it offers
and its limits (`panda pilot --help` sets these)."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from panda_runtime.client.credentials import TokenSource

__all__ = ["PilotConfig", "make_pilot_id"]


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
