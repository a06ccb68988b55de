"""Harvester's worker rules without a database: what a batch system's report changes, final
states staying final, and the limits operators set at run time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from harvester_svc.domain.limits import with_limits
from harvester_svc.domain.queue_config import QueueStatus, load_queue_config
from harvester_svc.domain.workers import FINAL_STATES, BatchReport, WorkerRecord, WorkerState, report_change

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
W = WorkerState


def _worker(state: WorkerState, **values: object) -> WorkerRecord:
    fields: dict[str, object] = dict(
        worker_id="h-1", harvester_id="h", queue="q", plugin="local", batch_id="42", state=state, node="",
        error="", exit_code=None, cores=1, memory_mb=100, walltime_seconds=600, access_point="/w/h-1",
        submit_time=NOW - timedelta(minutes=5), start_time=None, end_time=None, update_time=NOW, kill_reason="",
        killed=False, cleaned=False, version=1, reported_version=0)
    fields.update(values)
    return WorkerRecord(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
@pytest.mark.parametrize("new", [W.SUBMITTED, W.RUNNING, W.FINISHED, W.FAILED, W.MISSED])
def test_a_final_worker_stays_final(final: WorkerState, new: WorkerState) -> None:
    assert report_change(_worker(final, end_time=NOW), BatchReport("h-1", new, node="n1", exit_code=1), NOW) == {}


def test_starting_dates_the_start_and_keeps_it() -> None:
    change = report_change(_worker(W.SUBMITTED), BatchReport("h-1", W.RUNNING, node="n1"), NOW)
    assert change == {"state": W.RUNNING, "node": "n1", "start_time": NOW}
    started = NOW - timedelta(minutes=1)
    worker = _worker(W.RUNNING, node="n1", start_time=started)
    assert report_change(worker, BatchReport("h-1", W.RUNNING, node="n1"), NOW) == {}


def test_ending_dates_the_end_with_the_batch_systems_time_when_it_gives_one() -> None:
    ended = NOW - timedelta(seconds=30)
    worker = _worker(W.RUNNING, start_time=NOW - timedelta(minutes=2))
    change = report_change(worker, BatchReport("h-1", W.FAILED, exit_code=3, error="exit 3", end_time=ended), NOW)
    assert change == {"state": W.FAILED, "exit_code": 3, "error": "exit 3", "end_time": ended}
    assert report_change(worker, BatchReport("h-1", W.FINISHED, exit_code=0), NOW)["end_time"] == NOW


QUEUE = load_queue_config(json.dumps({"q": {"mapType": "NoJob", "maxWorkers": 10, "nQueueLimitWorker": 5,
                                            "submitter": {"plugin": "local"}}}))["q"]


def test_limits_replace_the_configured_ones() -> None:
    limited = with_limits(QUEUE, {"maxWorkers": 20, "nQueueLimitWorker": 8, "online": False})
    assert (limited.max_workers, limited.n_queue_limit_worker, limited.status) == (20, 8, QueueStatus.OFFLINE)
    assert with_limits(QUEUE, {}) == QUEUE


@pytest.mark.parametrize(("limits", "message"), [
    ({"maxWorkers": 3}, "nQueueLimitWorker (5) is more than maxWorkers (3)"),
    ({"maxWorkers": -1}, "maxWorkers: -1 is not a count"),
    ({"maxWorkers": True}, "maxWorkers: True is not a count"),
    ({"maxNewWorkersPerCycle": 11}, "maxNewWorkersPerCycle (11) is more than maxWorkers (10)"),
    ({"nQueueLimitJob": 4}, "only a push queue"),
    ({"maxworkers": 4}, "unknown limit 'maxworkers'"),
])
def test_limits_that_break_the_rules_are_refused(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        with_limits(QUEUE, limits)


def test_a_worker_never_starts_before_its_submission_nor_ends_before_its_start() -> None:
    """A batch system's clock, or its rounding, may say so; the server refuses such a worker."""
    worker = _worker(W.SUBMITTED)
    early = worker.submit_time - timedelta(milliseconds=10)
    change = report_change(worker, BatchReport("h-1", W.FINISHED, start_time=early, end_time=early), NOW)
    assert change["start_time"] == worker.submit_time and change["end_time"] == worker.submit_time
