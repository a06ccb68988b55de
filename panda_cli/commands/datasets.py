"""`panda dataset register|list|show` (JEDI)."""

from __future__ import annotations

from panda_cli import datasets
from panda_cli.arguments import (
    Commands,
    completes,
    jedi_address_option,
    non_negative_int,
    positive_int,
    server_address_option,
    task_id_arg,
)
from panda_cli.completion import queue_names

__all__ = ["register"]


def register(commands: Commands) -> None:
    dataset = commands.with_options(jedi_address_option()).group(
        "dataset", "register, list and show datasets (JEDI)", "datasets", dest="dataset_command")
    # It asks the server where a queue's storage element is, and registers with JEDI.
    p = dataset.with_options(server_address_option()).command("register", datasets.cmd_dataset_register,
                        "copy files onto a storage element and register them as a dataset")
    p.add_argument("name", metavar="NAME")
    p.add_argument("files", nargs="+", metavar="FILE")
    where = p.add_mutually_exclusive_group()
    completes(where.add_argument("--queue", metavar="Q", help="put the files on this queue's storage element "
                                 "(default: the default_queue setting, else local)"), queue_names)
    where.add_argument("--se", metavar="NAME", help="or on this configured storage element (panda se list)")
    p.add_argument("--events", type=non_negative_int, default=0, metavar="N", help="events in each file")
    p.add_argument("--prefix", default="", metavar="P", help="prepended to each file name to make its LFN")
    p.add_argument("--owner", metavar="O", help="who the dataset belongs to (default: the caller)")
    p.add_argument("--scope", metavar="S",
                   help="the scope of its files (default: the owner's, user.OWNER; a VO's needs production in it)")
    p = dataset.command("list", datasets.cmd_dataset_list, "datasets, newest first")
    p.add_argument("--name", metavar="PATTERN", help="dataset name, * as a wildcard")
    p.add_argument("--kind", choices=["input", "output"])
    p.add_argument("--owner", metavar="O")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N",
                   help="datasets to list (default 50), fetched page by page")
    p.add_argument("--page-token", metavar="T")
    p = dataset.command("show", datasets.cmd_dataset_show, "a dataset and its files (with --task: their state there)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--task", type=task_id_arg, metavar="ID", help="show each file's state in this task")
    p.add_argument("--files", type=non_negative_int, default=50, metavar="N", help="files to list (default 50)")
