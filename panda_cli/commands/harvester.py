"""`panda workers`, `panda worker show|kill` and `panda harvester status|commands`: harvester's
workers and instances, as the server keeps them."""

from __future__ import annotations

from panda_cli import harvester
from panda_cli.arguments import Commands, completes, positive_int, server_address_option
from panda_cli.completion import choices, harvester_names, queue_names

__all__ = ["register"]


def register(commands: Commands) -> None:
    commands = commands.with_options(server_address_option())
    states = ", ".join(harvester.worker_state_choices())
    p = commands.command("workers", harvester.cmd_workers, "list harvester's workers, newest first")
    completes(p.add_argument("--queue", metavar="Q", help="only the workers of this queue"), queue_names)
    completes(p.add_argument("--state", action="append", metavar="S",
                             help=f"only workers in this state (repeat for more): {states}"),
              choices(harvester.worker_state_choices()))
    completes(p.add_argument("--harvester", metavar="H", help="only the workers of this harvester instance"),
              harvester_names)
    p.add_argument("--limit", type=positive_int, default=50, metavar="N",
                   help="workers to list (default 50), fetched page by page")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")

    worker = commands.group("worker", "show or kill a harvester worker", "one harvester worker",
                            dest="worker_command")
    p = worker.command("show", harvester.cmd_worker_show, "a worker's details and the jobs its pilot was sent")
    p.add_argument("worker_id", metavar="ID")
    p = worker.command("kill", harvester.cmd_worker_kill,
                       "ask the worker's harvester instance to stop it (admins); it happens at its next heartbeat")
    p.add_argument("worker_id", metavar="ID")
    p.add_argument("--reason", help="kept with the command")

    instances = commands.group("harvester", "harvester instances and the commands queued for them",
                               "harvester instances", dest="harvester_command")
    instances.command("status", harvester.cmd_status,
                      "every instance: alive, last heartbeat, version, host, queues, live workers by state")
    p = instances.command("commands", harvester.cmd_commands, "an instance's commands, newest first")
    completes(p.add_argument("harvester_id", metavar="H"), harvester_names)
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="commands to list (default 50)")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")
