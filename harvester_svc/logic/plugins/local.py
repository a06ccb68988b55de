"""The `local` plugin: each worker is a pilot process on this machine, the embedded default
`panda up` uses.

A worker runs in its own process group (so a kill reaches the pilot and every payload it
started) under a small shell that writes the pilot's exit code into the access point when it
ends: a restarted harvester, no longer the processes' parent, still learns how each one ended.
A worker whose process is gone without that file (killed with its shell, or lost with a
reboot) is MISSED. The batch id is the process id; `batch.json` in the access point also keeps
the process's start time, so a recycled process id is never taken for the worker."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import psutil

from harvester_svc.domain.workers import BatchReport, SubmitOutcome, SubmittedWorker, WorkerSpec, WorkerState
from harvester_svc.logic.plugins.access_points import remove_access_point

__all__ = ["LocalPlugin"]

_BATCH_FILE = "batch.json"
_EXIT_FILE = "exit_code"
_LOG_FILE = "pilot.log"
# Runs the pilot, then records its exit code; the shell stays the group's leader meanwhile.
_WRAPPER = '"$@"; code=$?; echo "$code" > exit_code.tmp && mv exit_code.tmp exit_code; exit "$code"'


class LocalPlugin:
    name = "local"

    def __init__(self, *, kill_grace_seconds: float = 10.0) -> None:
        self._kill_grace = kill_grace_seconds
        # Children started by this process: polled so that none stays a zombie.
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._node = socket.gethostname()

    def submit(self, workers: Sequence[WorkerSpec]) -> list[SubmitOutcome]:
        return [self._submit_one(worker) for worker in workers]

    def _submit_one(self, worker: WorkerSpec) -> SubmitOutcome:
        access_point = Path(worker.access_point)
        try:
            access_point.mkdir(parents=True, exist_ok=True)
            with open(access_point / _LOG_FILE, "ab") as log:
                process = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER, "sh", *worker.pilot_command], cwd=access_point,
                    env={**os.environ, **worker.environment}, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )
        except OSError as error:
            return SubmitOutcome(worker.worker_id, error=f"cannot start the pilot: {error}")
        self._children[process.pid] = process
        started = _create_time(process.pid)
        (access_point / _BATCH_FILE).write_text(json.dumps({"pid": process.pid, "create_time": started}))
        return SubmitOutcome(worker.worker_id, batch_id=str(process.pid))

    def check(self, workers: Sequence[SubmittedWorker]) -> list[BatchReport]:
        for pid, child in list(self._children.items()):
            if child.poll() is not None:
                del self._children[pid]
        return [self._check_one(worker) for worker in workers]

    def _check_one(self, worker: SubmittedWorker) -> BatchReport:
        access_point = Path(worker.access_point)
        started = _started_at(access_point)
        exit_file = access_point / _EXIT_FILE
        if exit_file.exists():
            try:
                code = int(exit_file.read_text().strip())
            except ValueError:
                code = -1
            ended = datetime.fromtimestamp(exit_file.stat().st_mtime, UTC)
            state = WorkerState.FINISHED if code == 0 else WorkerState.FAILED
            return BatchReport(worker.worker_id, state, node=self._node, exit_code=code, start_time=started,
                               end_time=ended, error="" if code == 0 else f"the pilot exited with code {code}")
        if self._alive(worker):
            return BatchReport(worker.worker_id, WorkerState.RUNNING, node=self._node, start_time=started)
        return BatchReport(worker.worker_id, WorkerState.MISSED, node=self._node, start_time=started,
                           error="the pilot's process is gone and left no exit code")

    def _alive(self, worker: SubmittedWorker) -> bool:
        batch = _batch(Path(worker.access_point))
        if batch is None:
            return False
        try:
            process = psutil.Process(int(batch["pid"]))
            return process.create_time() == batch["create_time"] and process.status() != psutil.STATUS_ZOMBIE
        except (psutil.Error, ValueError):
            return False

    def kill(self, workers: Sequence[SubmittedWorker]) -> list[str]:
        alive = [worker for worker in workers if self._alive(worker)]
        for worker in alive:
            _signal_group(worker, signal.SIGTERM)
        deadline = time.monotonic() + self._kill_grace
        while time.monotonic() < deadline and any(self._alive(worker) for worker in alive):
            self.check([])  # reaps what ended
            time.sleep(0.1)
        for worker in alive:
            _signal_group(worker, signal.SIGKILL)
        return ["" for _ in workers]

    def clean(self, workers: Sequence[SubmittedWorker]) -> None:
        for worker in workers:
            # Nothing of an ended worker may outlive its cleaning: payloads its pilot left included.
            _signal_group(worker, signal.SIGKILL)
            remove_access_point(worker.access_point)


def _create_time(pid: int) -> float:
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return 0.0


def _batch(access_point: Path) -> dict[str, float] | None:
    try:
        batch: dict[str, float] = json.loads((access_point / _BATCH_FILE).read_text())
        return batch
    except (OSError, ValueError):
        return None


def _started_at(access_point: Path) -> datetime | None:
    batch = _batch(access_point)
    if batch is None or not batch.get("create_time"):
        return None
    return datetime.fromtimestamp(batch["create_time"], UTC)


def _signal_group(worker: SubmittedWorker, signum: signal.Signals) -> None:
    """Signals the worker's process group, which its shell leads. When the leader is gone, what
    is left of its group (payloads its pilot left) still is that group: no other process can get a
    group id of a pid no process has. A live process of that pid that started at another time is
    someone else's: left alone."""
    batch = _batch(Path(worker.access_point))
    if batch is None:
        return
    pid = int(batch["pid"])
    with contextlib.suppress(psutil.Error):
        if psutil.Process(pid).create_time() != batch["create_time"]:
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)
