"""Harvester commands: workers (list), worker show / kill, harvester status / commands, and the
harvester part of `queue show` (their parsers: commands/harvester.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

import grpc

from panda.harvester.v1 import harvester_service_pb2, worker_pb2
from panda.server.v1 import job_service_pb2
from panda_runtime.client import ServerClient
from panda_runtime.contracts.harvester import WORKER_STATES

from . import output
from .clients import all_pages, first_rows, server_client
from .errors import CliError, ExitCode
from .jobs import render_jobs_table
from .output import enum_name, format_duration, format_time, is_set, list_footer, or_dash, render_table

__all__ = [
    "cmd_commands", "cmd_status", "cmd_worker_kill", "cmd_worker_show", "cmd_workers", "format_worker_counts",
    "queue_config", "render_commands_table", "render_queue_config", "render_worker", "render_workers_table",
    "worker_state_choices",
]

W = worker_pb2.Worker
H = harvester_service_pb2
_STATE_ORDER = {name: number for number, name in enumerate(WORKER_STATES)}


def worker_state_choices() -> list[str]:
    return list(WORKER_STATES)


def worker_state_name(state: worker_pb2.Worker.State.ValueType) -> str:
    return enum_name(W.State, state, "STATE_")


def _parse_state(value: str) -> worker_pb2.Worker.State.ValueType:
    try:
        return output.parse_enum(value, W.State, "STATE_", "worker state")
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def format_worker_counts(counts: Mapping[str, int]) -> str:
    """Live workers by state, in the lifecycle's order: `submitted=2 running=10`."""
    items = sorted(((state, count) for state, count in counts.items() if count),
                   key=lambda item: (_STATE_ORDER.get(item[0], 99), item[0]))
    return " ".join(f"{state}={count}" for state, count in items) or "-"


def _age(moment: datetime) -> str:
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return "now" if seconds < 1 else f"{format_duration(seconds)} ago"


# --- workers -----------------------------------------------------------------------------


def render_workers_table(workers: Iterable[worker_pb2.Worker]) -> str:
    rows = [
        [w.worker_id, worker_state_name(w.state), w.queue, w.plugin, or_dash(w.batch_id), or_dash(w.node),
         len(w.job_ids) if w.job_ids else "-", format_time(w.submit_time), format_time(w.update_time)]
        for w in workers
    ]
    headers = ["ID", "STATE", "QUEUE", "PLUGIN", "BATCH ID", "NODE", "JOBS", "SUBMITTED", "UPDATED"]
    return render_table(headers, rows, right=(6,))


def cmd_workers(args: argparse.Namespace) -> int:
    states = [_parse_state(state) for state in args.state or []]
    request = H.ListWorkersRequest(queue=args.queue or "", states=states, harvester_id=args.harvester or "",
                                   page_token=args.page_token or "")
    with server_client(args.server) as client:
        workers, last = first_rows(client.harvester.ListWorkers, request, lambda page: page.workers, args.limit)
    if args.json:
        output.print_list_json("workers", workers, next_page_token=last.next_page_token, total_size=last.total_size)
        return 0
    print(render_workers_table(workers) if workers else "no workers")
    print(list_footer(len(workers), last.total_size, last.next_page_token))
    return 0


def render_worker(worker: worker_pb2.Worker, jobs: str = "") -> str:
    resources = worker.resources
    asked = ", ".join(part for part in (
        f"{resources.cores} core{'s' if resources.cores != 1 else ''}" if resources.cores else "",
        f"memory {output.format_mb(resources.memory_mb)}" if resources.memory_mb else "",
        f"walltime {format_duration(resources.walltime_seconds)}" if resources.walltime_seconds else "",
        f"disk {output.format_mb(resources.disk_mb)}" if resources.disk_mb else "",
    ) if part)
    ended = worker.state in (W.STATE_FINISHED, W.STATE_FAILED, W.STATE_CANCELLED, W.STATE_MISSED)
    fields: list[tuple[str, object]] = [
        ("worker", worker.worker_id),
        ("state", worker_state_name(worker.state)),
        ("harvester", worker.harvester_id),
        ("queue", worker.queue),
        ("plugin", worker.plugin),
        ("batch id", worker.batch_id),
        ("node", worker.node),
        ("resources", asked),
        ("submitted", format_time(worker.submit_time)),
        ("started", format_time(worker.start_time)),
        ("ended", format_time(worker.end_time)),
        ("updated", format_time(worker.update_time)),
    ]
    if ended or worker.exit_code:
        fields.append(("exit code", worker.exit_code))
    if worker.error:
        fields.append(("error", worker.error))
    fields.append(("jobs", output.id_ranges(worker.job_ids) if worker.job_ids else "none yet"))
    sections = [output.render_fields(fields)]
    if jobs:
        sections.append(jobs)
    return "\n\n".join(sections)


def cmd_worker_show(args: argparse.Namespace) -> int:
    with server_client(args.server) as client:
        worker = client.harvester.GetWorker(H.GetWorkerRequest(worker_id=args.worker_id)).worker
        if args.json:
            output.print_json(worker)
            return 0
        jobs = []
        if worker.job_ids:
            # Those of the worker's jobs the caller may see (its own, unless it sees more).
            request = job_service_pb2.ListJobsRequest(filter=f'worker_id = "{worker.worker_id}"', page_size=1000)
            jobs = [job for page in all_pages(client.jobs.ListJobs, request) for job in page.jobs]
    table = "jobs of its pilot:\n" + _indent(render_jobs_table(jobs)) if jobs else ""
    print(render_worker(worker, table))
    return 0


def cmd_worker_kill(args: argparse.Namespace) -> int:
    request = H.KillWorkerRequest(worker_id=args.worker_id, reason=args.reason or "")
    with server_client(args.server) as client:
        command = client.harvester.KillWorker(request).command
    if args.json:
        output.print_json(command)
    else:
        print(f"kill of worker {command.worker_id} queued for harvester {command.harvester_id} "
              f"(command {command.command_id}; panda harvester commands {command.harvester_id})")
    return 0


# --- harvester instances -----------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    with server_client(args.server) as client:
        request = H.ListHarvestersRequest(page_size=1000)
        instances = [h for page in all_pages(client.harvester.ListHarvesters, request) for h in page.harvesters]
    if args.json:
        output.print_list_json("harvesters", instances)
        return 0
    if not instances:
        print("no harvester instances (an instance appears here once it registers)")
        return 0
    rows = [
        [h.harvester_id, "yes" if h.alive else "NO", _age(h.heartbeat_time.ToDatetime(tzinfo=UTC))
         if is_set(h.heartbeat_time) else "-", or_dash(h.version), or_dash(h.host), ", ".join(h.queues) or "-",
         format_worker_counts(h.worker_counts)]
        for h in instances
    ]
    print(render_table(["ID", "ALIVE", "HEARTBEAT", "VERSION", "HOST", "QUEUES", "WORKERS"], rows))
    return 0


_KIND_PREFIX, _COMMAND_STATE_PREFIX = "KIND_", "STATE_"


def render_commands_table(commands: Iterable[worker_pb2.HarvesterCommand]) -> str:
    rows = []
    for c in commands:
        kind = enum_name(worker_pb2.HarvesterCommand.Kind, c.kind, _KIND_PREFIX)
        target = c.worker_id or c.queue_id
        if c.kind == worker_pb2.HarvesterCommand.KIND_SET_QUEUE_LIMITS:
            limits = " ".join(f"{field.name}={str(value).lower()}" for field, value in c.limits.ListFields())
            target = f"{c.queue_id} {limits}".strip()
        state = enum_name(worker_pb2.HarvesterCommand.State, c.state, _COMMAND_STATE_PREFIX)
        rows.append([c.command_id, kind, target, state, c.issuer, format_time(c.create_time),
                     output.truncate(c.result or c.reason, 48) or "-"])
    return render_table(["ID", "KIND", "TARGET", "STATE", "ISSUER", "CREATED", "RESULT/REASON"], rows, right=(0,))


def cmd_commands(args: argparse.Namespace) -> int:
    request = H.ListHarvesterCommandsRequest(harvester_id=args.harvester_id, page_token=args.page_token or "")
    with server_client(args.server) as client:
        commands, last = first_rows(client.harvester.ListHarvesterCommands, request, lambda page: page.commands,
                                    args.limit)
    if args.json:
        output.print_list_json("commands", commands, next_page_token=last.next_page_token)
        return 0
    print(render_commands_table(commands) if commands else f"no commands for harvester {args.harvester_id}")
    if last.next_page_token:
        print(f"more: same command with --page-token {last.next_page_token}")
    return 0


# --- queue show's harvester part ---------------------------------------------------------


def queue_config(client: ServerClient, queue_id: str) -> worker_pb2.QueueConfig | None:
    """The queue's harvester configuration; None when no instance provisions it (or the server
    is of a release before harvester's registry)."""
    try:
        return client.harvester.GetQueueConfig(H.GetQueueConfigRequest(queue_id=queue_id)).queue_config
    except grpc.RpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED):
            return None
        raise


def render_queue_config(config: worker_pb2.QueueConfig) -> str:
    resources = config.resources
    limits = (f"max {config.max_workers} workers, {config.queue_limit_workers} waiting"
              + (f", {config.max_new_workers_per_cycle} new per cycle" if config.max_new_workers_per_cycle else ""))
    if config.queue_limit_jobs:
        limits += f", {config.queue_limit_jobs} jobs fetched ahead"
    fields: list[tuple[str, object]] = [
        ("harvester", config.harvester_id),
        ("provisioning", "online" if config.online else "offline (no new workers)"),
        ("plugin", config.plugin + "".join(f" {k}={v}" for k, v in sorted(config.plugin_parameters.items()))),
        ("map type", enum_name(worker_pb2.QueueConfig.MapType, config.map_type, "MAP_TYPE_")
         + (f" ({config.jobs_per_worker} jobs per worker)" if config.jobs_per_worker > 1 else "")),
        ("messenger", enum_name(worker_pb2.QueueConfig.Messenger, config.messenger, "MESSENGER_")),
        ("limits", limits),
        ("worker asks", f"{resources.cores or '-'} cores, memory {output.format_mb(resources.memory_mb)}, "
                        f"walltime {format_duration(resources.walltime_seconds)}"),
        ("workers", format_worker_counts(config.worker_counts)),
    ]
    return "harvester:\n" + _indent(output.render_fields(fields))


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())
