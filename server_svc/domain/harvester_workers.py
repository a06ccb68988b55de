"""Harvester's workers as the server keeps them: what a report must be, and what a report does
to the worker it names (a new one is recorded; a known one takes the news, unless it is in a
final state, which it keeps). A report of many workers is decided worker by worker: one refused
leaves the others applied."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from panda_runtime.contracts import Violation
from panda_runtime.contracts import harvester as contract
from panda_runtime.contracts.rules import check_name, check_text
from panda_runtime.contracts.server import MAX_NODE_LENGTH, QUEUE_ID
from panda_runtime.service.errors import FailedPrecondition, InvalidArgument, ServiceError

__all__ = [
    "EARLIEST_TIME", "MAX_CLOCK_SKEW", "ReportDecision", "Worker", "WorkerReport", "apply_worker_report",
    "check_worker_report", "decide_reports", "readable_worker_ids",
]

# A time a report gives is after this, and not ahead of the server's clock by more than the
# skew: anything else is a clock or a conversion gone wrong (an unset time is 1970).
EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class WorkerReport:
    """What an instance says of one worker. Empty text, zero resources and unset times say
    nothing: what the server knows already stays."""

    worker_id: str
    harvester_id: str  # as the report gives it: empty, or the reporting instance's
    queue: str
    plugin: str
    batch_id: str
    state: str  # a name of contract.WORKER_STATES, or what came instead
    node: str
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    error: str
    exit_code: int
    submit_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None


@dataclass(slots=True)
class Worker:
    """A worker as stored; the names are the columns'. `create_time` is when the server first
    heard of it (what "newest first" sorts by), `update_time` when last."""

    worker_id: str
    harvester_id: str
    queue: str
    plugin: str
    batch_id: str
    state: str
    node: str
    cores: int
    memory_mb: int
    walltime_seconds: int
    disk_mb: int
    error: str
    exit_code: int
    submit_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    create_time: datetime
    update_time: datetime
    job_ids: list[int] = field(default_factory=list)  # the jobs sent to its pilot, when asked for


def _refuse(violation: Violation) -> InvalidArgument:
    return InvalidArgument.of(violation)


def _check_time(moment: datetime | None, where: str, now: datetime) -> None:
    if moment is not None and not EARLIEST_TIME <= moment <= now + MAX_CLOCK_SKEW:
        raise InvalidArgument(f"{where}: {moment.isoformat()} is not a time a worker can have (before 2000, or "
                              "ahead of the server's clock)", field=where)


def check_worker_report(report: WorkerReport, where: str, harvester_id: str, provisioned: Collection[str],
                        now: datetime, known_queue: str = "") -> None:
    """A report of instance `harvester_id`, which provisions the queues `provisioned`: its
    fields well formed, its queue one of those (or, for a worker the server knows, the queue it
    serves: an instance that stopped provisioning a queue still reports how its workers there
    end), its times in order. INVALID_ARGUMENT naming the field (`workers[3].state`) otherwise."""
    try:
        contract.check_worker_id(report.worker_id, harvester_id, f"{where}.worker_id")
        if report.harvester_id not in ("", harvester_id):
            raise Violation(f"{where}.harvester_id", f"a worker of harvester {report.harvester_id!r} reported by "
                                                     f"harvester {harvester_id}")
        if not report.queue:
            raise Violation(f"{where}.queue", "queue is required")
        check_name(report.queue, f"{where}.queue", QUEUE_ID, "a queue id")
        if report.queue not in provisioned and report.queue != known_queue:
            raise Violation(f"{where}.queue", f"queue {report.queue} is not provisioned by harvester {harvester_id} "
                                              "(RegisterInstance names the queues it provisions)")
        if report.plugin not in contract.PLUGINS:
            raise Violation(f"{where}.plugin", f"plugin must be one of {', '.join(contract.PLUGINS)}, "
                                               f"not {report.plugin[:64]!r}")
        if report.state not in contract.WORKER_STATES:
            raise Violation(f"{where}.state", f"a worker state is required ({', '.join(contract.WORKER_STATES)}), "
                                              f"not {report.state or 'unspecified'}")
        check_text(report.batch_id, f"{where}.batch_id", max_length=contract.MAX_BATCH_ID_LENGTH)
        check_text(report.node, f"{where}.node", max_length=MAX_NODE_LENGTH)
        check_text(report.error, f"{where}.error", max_length=contract.MAX_WORKER_ERROR_LENGTH)
        for name in ("cores", "memory_mb", "walltime_seconds", "disk_mb"):
            if getattr(report, name) < 0:
                raise Violation(f"{where}.resources.{name}", f"{name} must not be negative")
    except Violation as violation:
        raise _refuse(violation) from None
    for name in ("submit_time", "start_time", "end_time"):
        _check_time(getattr(report, name), f"{where}.{name}", now)
    submit, start, end = report.submit_time, report.start_time, report.end_time
    if submit is not None and start is not None and start < submit:
        raise InvalidArgument(f"{where}.start_time: the worker started before it was submitted",
                              field=f"{where}.start_time")
    if end is not None:
        if report.state not in contract.FINAL_WORKER_STATES:
            raise InvalidArgument(f"{where}.end_time: a worker that is {report.state} has not ended",
                                  field=f"{where}.end_time")
        if any(earlier is not None and end < earlier for earlier in (submit, start)):
            raise InvalidArgument(f"{where}.end_time: the worker ended before it was submitted or started",
                                  field=f"{where}.end_time")


def apply_worker_report(stored: Worker | None, report: WorkerReport, harvester_id: str, now: datetime) -> Worker:
    """The worker after a (checked) report: new, or the stored one with what the report says.
    A worker serves one queue, and a final state is final: a report that would change either
    is FAILED_PRECONDITION (the same final state again is a repeat, and taken)."""
    if stored is None:
        return Worker(
            worker_id=report.worker_id, harvester_id=harvester_id, queue=report.queue, plugin=report.plugin,
            batch_id=report.batch_id, state=report.state, node=report.node, cores=report.cores,
            memory_mb=report.memory_mb, walltime_seconds=report.walltime_seconds, disk_mb=report.disk_mb,
            error=report.error, exit_code=report.exit_code, submit_time=report.submit_time,
            start_time=report.start_time, end_time=report.end_time, create_time=now, update_time=now,
        )
    subject = f"workers/{stored.worker_id}"
    if report.queue != stored.queue:
        raise FailedPrecondition(f"worker {stored.worker_id} serves queue {stored.queue}, not {report.queue}",
                                 subject=subject)
    if stored.state in contract.FINAL_WORKER_STATES and report.state != stored.state:
        raise FailedPrecondition(f"worker {stored.worker_id} is {stored.state}, a final state: it cannot become "
                                 f"{report.state}", subject=subject)
    resources_given = any((report.cores, report.memory_mb, report.walltime_seconds, report.disk_mb))
    ended = report.state in contract.FINAL_WORKER_STATES
    return replace(
        stored,
        state=report.state,
        plugin=report.plugin or stored.plugin,
        batch_id=report.batch_id or stored.batch_id,
        node=report.node or stored.node,
        error=report.error or stored.error,
        exit_code=report.exit_code if report.exit_code or ended else stored.exit_code,
        cores=report.cores if resources_given else stored.cores,
        memory_mb=report.memory_mb if resources_given else stored.memory_mb,
        walltime_seconds=report.walltime_seconds if resources_given else stored.walltime_seconds,
        disk_mb=report.disk_mb if resources_given else stored.disk_mb,
        submit_time=report.submit_time or stored.submit_time,
        start_time=report.start_time or stored.start_time,
        end_time=report.end_time or stored.end_time,
        update_time=now,
        job_ids=[],
    )


@dataclass(slots=True)
class ReportDecision:
    """A report of many workers, decided: for each, in order, None (applied) or why it was
    refused; the workers to insert (new) and to update (known), each once, as they end."""

    results: list[ServiceError | None]
    inserts: list[Worker]
    updates: list[Worker]


def readable_worker_ids(reports: Iterable[WorkerReport], harvester_id: str) -> list[str]:
    """The ids of the reports that are worker ids of the instance (the others are refused before
    anything is read for them): those the store reads."""
    ids = []
    for report in reports:
        try:
            ids.append(contract.check_worker_id(report.worker_id, harvester_id))
        except Violation:
            continue
    return sorted(set(ids))


def decide_reports(harvester_id: str, reports: Sequence[WorkerReport], stored: Mapping[str, Worker],
                   provisioned: Collection[str], now: datetime) -> ReportDecision:
    """Each report in turn, on the workers as `stored` (those of the reports' ids the server
    knows) and as the reports before it left them: a worker reported twice takes both."""
    results: list[ServiceError | None] = []
    current = dict(stored)
    touched: dict[str, Worker] = {}
    for index, report in enumerate(reports):
        try:
            known = current.get(report.worker_id)
            check_worker_report(report, f"workers[{index}]", harvester_id, provisioned, now,
                                known.queue if known is not None else "")
            worker = apply_worker_report(known, report, harvester_id, now)
        except (InvalidArgument, FailedPrecondition) as refused:
            results.append(refused)
            continue
        current[worker.worker_id] = touched[worker.worker_id] = worker
        results.append(None)
    return ReportDecision(
        results,
        inserts=[worker for worker_id, worker in touched.items() if worker_id not in stored],
        updates=[worker for worker_id, worker in touched.items() if worker_id in stored],
    )
