"""The local plugin with real processes: workers start, end with their exit codes, are killed
with everything they started, are found again by a new plugin (a restarted harvester), are
MISSED when they vanish without a word, and leave nothing behind when cleaned."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from harvester_svc.domain.workers import BatchReport, SubmittedWorker, WorkerSpec, WorkerState
from harvester_svc.logic.plugins.local import LocalPlugin


def _spec(tmp_path: Path, worker_id: str, *command: str) -> WorkerSpec:
    return WorkerSpec(worker_id=worker_id, queue_id="local", access_point=str(tmp_path / worker_id), cores=1,
                      memory_mb=100, walltime_seconds=600, pilot_command=command,
                      environment={"WORKER_MARK": worker_id})


def _submitted(spec: WorkerSpec, batch_id: str) -> SubmittedWorker:
    return SubmittedWorker(spec.worker_id, spec.queue_id, batch_id, spec.access_point)


def _until(check: Callable[[], BatchReport], wanted: set[WorkerState], timeout: float = 20.0) -> BatchReport:
    deadline = time.monotonic() + timeout
    report = check()
    while report.state not in wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        report = check()
    return report


def _gone(process: psutil.Process, timeout: float = 10.0) -> bool:
    """Dead (a zombie waiting for whoever adopted it counts as dead), within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_workers_end_with_their_exit_codes_and_environment(tmp_path: Path) -> None:
    plugin = LocalPlugin(kill_grace_seconds=2)
    good = _spec(tmp_path, "h-1", "/bin/sh", "-c", 'echo "$WORKER_MARK" > mark')
    bad = _spec(tmp_path, "h-2", "/bin/sh", "-c", "exit 3")
    outcomes = plugin.submit([good, bad])
    assert all(outcome.batch_id.isdigit() and not outcome.error for outcome in outcomes)
    workers = [_submitted(spec, outcome.batch_id) for spec, outcome in zip((good, bad), outcomes, strict=True)]

    first = _until(lambda: plugin.check(workers[:1])[0], {WorkerState.FINISHED})
    second = _until(lambda: plugin.check(workers[1:])[0], {WorkerState.FAILED})
    assert (first.state, first.exit_code) == (WorkerState.FINISHED, 0)
    assert (second.state, second.exit_code) == (WorkerState.FAILED, 3)
    assert "code 3" in second.error
    assert first.node and first.start_time is not None and first.end_time is not None
    assert (Path(good.access_point) / "mark").read_text().strip() == "h-1"


def test_a_kill_stops_the_worker_and_what_it_started(tmp_path: Path) -> None:
    plugin = LocalPlugin(kill_grace_seconds=2)
    # The "pilot" starts a child that ignores SIGTERM: SIGKILL after the grace must reach it too.
    spec = _spec(tmp_path, "h-3", "/bin/sh", "-c", "(trap '' TERM; sleep 300) & echo $! > child; wait")
    outcome = plugin.submit([spec])[0]
    worker = _submitted(spec, outcome.batch_id)
    child_file = Path(spec.access_point) / "child"
    deadline = time.monotonic() + 10
    while not child_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = psutil.Process(int(child_file.read_text()))
    assert plugin.check([worker])[0].state == WorkerState.RUNNING

    assert plugin.kill([worker]) == [""]
    assert _gone(child)
    assert _until(lambda: plugin.check([worker])[0], {WorkerState.FAILED, WorkerState.MISSED}).state in (
        WorkerState.FAILED, WorkerState.MISSED)


def test_a_new_plugin_finds_the_workers_of_the_last_one(tmp_path: Path) -> None:
    """A restarted harvester is no longer the processes' parent: the access point tells."""
    spec = _spec(tmp_path, "h-4", "/bin/sh", "-c", "sleep 1; exit 5")
    outcome = LocalPlugin().submit([spec])[0]
    worker = _submitted(spec, outcome.batch_id)
    later = LocalPlugin()
    assert later.check([worker])[0].state == WorkerState.RUNNING
    report = _until(lambda: later.check([worker])[0], {WorkerState.FAILED})
    assert (report.state, report.exit_code) == (WorkerState.FAILED, 5)


def test_a_worker_gone_without_a_word_is_missed(tmp_path: Path) -> None:
    plugin = LocalPlugin()
    spec = _spec(tmp_path, "h-5", sys.executable, "-c", "import time; time.sleep(300)")
    outcome = plugin.submit([spec])[0]
    worker = _submitted(spec, outcome.batch_id)
    # The node's own reaper, not the plugin: the whole group dies, its shell included.
    os.killpg(int(outcome.batch_id), signal.SIGKILL)
    report = _until(lambda: plugin.check([worker])[0], {WorkerState.MISSED})
    assert report.state == WorkerState.MISSED
    assert "no exit code" in report.error


def test_cleaning_leaves_no_process_and_no_access_point(tmp_path: Path) -> None:
    plugin = LocalPlugin()
    spec = _spec(tmp_path, "h-6", "/bin/sh", "-c", "sleep 300 & echo $! > child; exit 0")
    outcome = plugin.submit([spec])[0]
    worker = _submitted(spec, outcome.batch_id)
    assert _until(lambda: plugin.check([worker])[0], {WorkerState.FINISHED}).state == WorkerState.FINISHED
    # The pilot ended but left a payload running in its group.
    orphan = psutil.Process(int((Path(spec.access_point) / "child").read_text()))
    assert orphan.is_running()
    plugin.clean([worker])
    assert _gone(orphan)
    assert not Path(spec.access_point).exists()


def test_a_recycled_process_id_is_not_taken_for_the_worker(tmp_path: Path) -> None:
    plugin = LocalPlugin()
    spec = _spec(tmp_path, "h-7", "/bin/sh", "-c", "sleep 300")
    outcome = plugin.submit([spec])[0]
    worker = _submitted(spec, outcome.batch_id)
    process = psutil.Process(int(outcome.batch_id))
    batch = Path(spec.access_point) / "batch.json"
    # As if the worker were long gone and another process now held its pid: the start time differs.
    batch.write_text(batch.read_text().replace('"create_time": ', '"create_time": 1'))
    try:
        assert plugin.check([worker])[0].state == WorkerState.MISSED
        plugin.kill([worker])
        plugin.clean([worker])  # signals the group unless the start time says it is another's
        time.sleep(0.5)
        assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        assert not Path(spec.access_point).exists()
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
