"""Measuring a payload's process tree with psutil: RSS (sum, peak) and CPU time."""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["MIB", "ProcessTreeMonitor", "Usage", "group_members", "latest_mtime"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    max_rss_bytes: int
    cpu_seconds: float

    @property
    def max_rss_mb(self) -> int:
        return -(-self.max_rss_bytes // MIB)  # round up: 1 byte used is not 0 MiB

    @property
    def rss_mb(self) -> int:
        return -(-self.rss_bytes // MIB)


class ProcessTreeMonitor:
    """Samples the tree under one root process; remembers every process it has seen.

    CPU time is the sum over live processes of user+system plus their reaped children's times,
    so a finished child counts once it is waited for (a process reaped by init is lost: that is
    as far as psutil allows). Samples only ever raise the totals.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._known: dict[int, psutil.Process] = {}
        self._rss = 0
        self._max_rss = 0
        self._cpu = 0.0
        with contextlib.suppress(psutil.Error):
            self._known[root_pid] = psutil.Process(root_pid)

    def _live_processes(self) -> list[psutil.Process]:
        root = self._known.get(self.root_pid)
        if root is not None:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    self._known.setdefault(child.pid, child)
        live = []
        for pid, process in list(self._known.items()):
            if process.is_running():
                live.append(process)
            else:
                # Gone (or its pid reused): never signal or count it again.
                del self._known[pid]
        return live

    def sample(self) -> Usage:
        rss = 0
        cpu = 0.0
        for process in self._live_processes():
            try:
                with process.oneshot():
                    times = process.cpu_times()
                    if process.status() != psutil.STATUS_ZOMBIE:
                        rss += process.memory_info().rss
            except psutil.Error:
                continue
            cpu += times.user + times.system + times.children_user + times.children_system
        self._rss = rss
        self._max_rss = max(self._max_rss, rss)
        self._cpu = max(self._cpu, cpu)
        return self.usage()

    def add_rusage(self, usage: resource.struct_rusage) -> None:
        """Fold in the root's rusage from wait4: it covers every descendant the tree reaped."""
        self._cpu = max(self._cpu, usage.ru_utime + usage.ru_stime)
        # Not ru_maxrss: it counts the pilot's own pages the child had between fork and exec.
        self._rss = 0

    def usage(self) -> Usage:
        return Usage(rss_bytes=self._rss, max_rss_bytes=self._max_rss, cpu_seconds=self._cpu)

    def processes(self) -> list[psutil.Process]:
        """Every process of the tree still alive (not zombie), including ones that left the group."""
        alive = []
        for process in self._live_processes():
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        return alive


def latest_mtime(directory: Path) -> float:
    """Newest modification time of any file under `directory` (0 when there is none)."""
    newest = 0.0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
    return newest


def group_members(pgid: int) -> list[int]:
    """Pids of live (non-zombie) processes in process group `pgid`."""
    members = []
    for process in psutil.process_iter(["status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if os.getpgid(process.pid) == pgid:
                members.append(process.pid)
        except OSError:
            continue
    return members
