"""`panda se add|set|list|show`: storage elements."""

from __future__ import annotations

from panda_cli import storage
from panda_cli.arguments import Commands, completes, server_address_option
from panda_cli.completion import queue_names

__all__ = ["register"]


def register(commands: Commands) -> None:
    se = commands.with_options(server_address_option()).group(
        "se", "add, set, list, show storage elements", "storage elements", dest="se_command")
    p = se.command("add", storage.cmd_se_add, "configure a storage element (admins)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("url", metavar="URL", help="where its files are, e.g. file:///data/se/NAME")
    completes(p.add_argument("--queue", action="append", metavar="Q",
                             help="a queue whose jobs may use it (repeat for more; none: every queue)"), queue_names)
    p.add_argument("--vo", action="append", metavar="VO",
                   help="a VO whose jobs may read and write it (repeat for more; none: every VO)")
    p.add_argument("--description")
    p = se.command("set", storage.cmd_se_set, "change a storage element (admins); what is not given stays")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--url", metavar="URL", help="where its files are from now on")
    queues = p.add_mutually_exclusive_group()
    completes(queues.add_argument("--queue", action="append", metavar="Q",
                                  help="the queues whose jobs may use it, replacing the list (repeat for more)"),
              queue_names)
    queues.add_argument("--every-queue", action="store_true", help="every queue's jobs may use it")
    vos = p.add_mutually_exclusive_group()
    vos.add_argument("--vo", action="append", metavar="VO",
                     help="the VOs whose jobs may read and write it, replacing the list (repeat for more)")
    vos.add_argument("--every-vo", action="store_true", help="every VO's jobs may read and write it")
    p.add_argument("--description")
    se.command("list", storage.cmd_se_list, "storage elements, their URLs, queues and VOs")
    p = se.command("show", storage.cmd_se_show, "one storage element")
    p.add_argument("name", metavar="NAME")
