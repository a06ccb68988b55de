"""`panda queue list|add|show|set-status`."""

from __future__ import annotations

from panda_cli import queues
from panda_cli.arguments import Commands, completes, non_negative_int, server_address_option
from panda_cli.completion import choices, queue_names
from panda_cli.output import queue_status_choices

__all__ = ["register"]


def register(commands: Commands) -> None:
    queue = commands.with_options(server_address_option()).group(
        "queue", "list, add, show queues; set their status", "queues", dest="queue_command")
    statuses = ", ".join(queue_status_choices())
    p = queue.command("list", queues.cmd_list, "queues with limits, job counts and pilots")
    completes(p.add_argument("--status", metavar="STATUS", help=f"only queues with this status ({statuses})"),
              choices(queue_status_choices()))
    p = queue.command("add", queues.cmd_add, "create a queue")
    p.add_argument("name", metavar="NAME")
    completes(p.add_argument("--status", default="online", metavar="STATUS", help=f"{statuses} (default online)"),
              choices(queue_status_choices()))
    p.add_argument("--cores", type=non_negative_int, metavar="N", help="largest job's cores (0: no limit)")
    p.add_argument("--memory", type=non_negative_int, metavar="MB", help="largest job's memory, MiB")
    p.add_argument("--walltime", metavar="S", help="largest job's walltime: seconds, or e.g. 12h")
    p.add_argument("--disk", type=non_negative_int, metavar="MB", help="scratch disk per job, MiB")
    p.add_argument("--storage-element", metavar="NAME",
                   help="the configured storage element its jobs use (panda se list)")
    p.add_argument("--description")
    p = queue.command("show", queues.cmd_show, "one queue")
    completes(p.add_argument("name", metavar="NAME"), queue_names)
    p = queue.command("set-status", queues.cmd_set_status, "set a queue's status")
    completes(p.add_argument("name", metavar="NAME"), queue_names)
    completes(p.add_argument("status", metavar="STATUS", help=statuses), choices(queue_status_choices()))
