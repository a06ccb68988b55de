"""Queue commands: queue list / add / show / set-status (their parsers: commands/queues.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping

from google.protobuf import field_mask_pb2

from panda.common.v1 import resources_pb2
from panda.server.v1 import job_pb2, queue_pb2, queue_service_pb2
from panda_runtime.client import ServerClient

from . import output
from .clients import all_pages, server_client
from .errors import CliError, ExitCode
from .harvester import queue_config, render_queue_config
from .output import format_duration, format_mb, format_time, or_dash, queue_status_name, render_table
from .specs import SpecError, parse_duration

__all__ = [
    "cmd_add", "cmd_list", "cmd_set_status", "cmd_show", "format_job_counts", "list_all_queues", "parse_status",
    "queue_from_args", "render_queue", "render_queues_table",
]

# Job counts are listed in lifecycle order (the enum's), not alphabetically.
_STATE_ORDER = {name.removeprefix("STATE_").lower(): number for name, number in job_pb2.Job.State.items()}


def parse_status(value: str) -> queue_pb2.Queue.Status.ValueType:
    try:
        return output.parse_enum(value, queue_pb2.Queue.Status, "STATUS_", "queue status")
    except ValueError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def format_job_counts(counts: Mapping[str, int]) -> str:
    items = sorted(
        ((k, v) for k, v in counts.items() if v), key=lambda kv: (_STATE_ORDER.get(kv[0].lower(), 99), kv[0])
    )
    return " ".join(f"{k}={v}" for k, v in items) or "-"


def list_all_queues(
    client: ServerClient, status: queue_pb2.Queue.Status.ValueType = queue_pb2.Queue.STATUS_UNSPECIFIED
) -> list[queue_pb2.Queue]:
    request = queue_service_pb2.ListQueuesRequest(page_size=1000, status=status)
    return [queue for page in all_pages(client.queues.ListQueues, request) for queue in page.queues]


def render_queues_table(queues: Iterable[queue_pb2.Queue]) -> str:
    rows = [
        [
            q.queue_id,
            queue_status_name(q.status),
            q.max_resources.cores or "-",
            format_mb(q.max_resources.memory_mb),
            format_duration(q.max_resources.walltime_seconds),
            or_dash(q.storage_element),
            format_job_counts(q.job_counts),
            q.connected_pilots,
        ]
        for q in queues
    ]
    headers = ["ID", "STATUS", "CORES", "MEMORY", "WALLTIME", "SE", "JOBS", "PILOTS"]
    return render_table(headers, rows, right=(2, 3, 4, 7))


def render_queue(queue: queue_pb2.Queue) -> str:
    limits = queue.max_resources
    fields: list[tuple[str, object]] = [
        ("queue", queue.queue_id),
        ("status", queue_status_name(queue.status)),
        ("description", queue.description),
        ("storage element", queue.storage_element),
        ("max cores", limits.cores or "no limit"),
        ("max memory", format_mb(limits.memory_mb) if limits.memory_mb else "no limit"),
        ("max walltime", format_duration(limits.walltime_seconds) if limits.walltime_seconds else "no limit"),
        ("max disk", format_mb(limits.disk_mb) if limits.disk_mb else "no limit"),
        ("pilots", queue.connected_pilots),
        ("jobs", format_job_counts(queue.job_counts)),
        ("created", format_time(queue.create_time)),
        ("updated", format_time(queue.update_time)),
    ]
    return output.render_fields(fields)


def cmd_list(args: argparse.Namespace) -> int:
    status = parse_status(args.status) if args.status else queue_pb2.Queue.STATUS_UNSPECIFIED
    with server_client(args.server) as client:
        queues = list_all_queues(client, status)
    if args.json:
        output.print_list_json("queues", queues)
    elif queues:
        print(render_queues_table(queues))
    else:
        print("no queues (add one with: panda queue add NAME)")
    return 0


def queue_from_args(args: argparse.Namespace) -> queue_pb2.Queue:
    try:
        walltime = parse_duration(args.walltime) if args.walltime else 0
    except SpecError as exc:
        raise CliError(f"--walltime: {exc}", ExitCode.USAGE) from None
    return queue_pb2.Queue(
        queue_id=args.name,
        status=parse_status(args.status),
        max_resources=resources_pb2.Resources(
            cores=args.cores or 0,
            memory_mb=args.memory or 0,
            walltime_seconds=walltime,
            disk_mb=args.disk or 0,
        ),
        storage_element=args.storage_element or "",
        description=args.description or "",
    )


def cmd_add(args: argparse.Namespace) -> int:
    queue = queue_from_args(args)
    with server_client(args.server) as client:
        created = client.queues.CreateQueue(queue_service_pb2.CreateQueueRequest(queue=queue)).queue
    return output.show(created, lambda q: f"created queue {q.queue_id} ({queue_status_name(q.status)})",
                       as_json=args.json)


def cmd_show(args: argparse.Namespace) -> int:
    """The queue, and how harvester provisions it when an instance does (with --json, under
    `harvester_config`, beside the queue's own fields)."""
    with server_client(args.server) as client:
        queue = client.queues.GetQueue(queue_service_pb2.GetQueueRequest(queue_id=args.name)).queue
        config = queue_config(client, queue.queue_id)
    if args.json:
        data = output.message_to_dict(queue)
        if config is not None:
            data["harvester_config"] = output.message_to_dict(config)
        output.print_json(data)
    else:
        print(render_queue(queue) + (f"\n\n{render_queue_config(config)}" if config is not None else ""))
    return 0


def cmd_set_status(args: argparse.Namespace) -> int:
    status = parse_status(args.status)
    request = queue_service_pb2.UpdateQueueRequest(
        queue=queue_pb2.Queue(queue_id=args.name, status=status),
        update_mask=field_mask_pb2.FieldMask(paths=["status"]),
    )
    with server_client(args.server) as client:
        updated = client.queues.UpdateQueue(request).queue
    if args.json:
        output.print_json(updated)
    else:
        print(f"queue {updated.queue_id or args.name} is now {queue_status_name(updated.status or status)}")
    return 0
