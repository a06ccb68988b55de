"""`panda task submit|show|watch|kill|finish|retry|pause|resume|reassign|priority` and `panda tasks` (JEDI)."""

from __future__ import annotations

from panda_cli import tasks
from panda_cli.arguments import Commands, completes, jedi_address_option, positive_int, task_id_arg
from panda_cli.completion import choices, queue_names
from panda_runtime.contracts.jedi import TASK_SORT_FIELDS

__all__ = ["register"]

# Commands that only change a task's state, with what each does.
STATE_COMMANDS = [
    ("kill", "kill a task: its jobs are killed, it ends aborted"),
    ("finish", "finish a task: no new jobs, running ones end"),
    ("retry", "run again the failed and unprocessed files of a finished/failed/aborted/exhausted task"),
    ("pause", "no new jobs until resumed"),
    ("resume", "resume a paused task"),
]


def register(commands: Commands) -> None:
    jedi = commands.with_options(jedi_address_option())
    task = jedi.group("task", "submit, show, watch and steer tasks (JEDI)", "tasks", dest="task_command")
    p = task.command("submit", tasks.cmd_task_submit, "submit a task from a YAML file, print its id",
                     epilog="the task file format is in the README (\"Task files\"); see examples/task.yaml")
    p.add_argument("-f", "--file", required=True, metavar="FILE", help="task file ('-' reads stdin)")
    p = task.command("show", tasks.cmd_task_show,
                     "a task's state, progress, jobs by state, scouts' measurements and history")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    p = task.command("watch", tasks.cmd_task_watch,
                     "follow a task's events and progress until it ends (exit 0: done/finished; 6: failed, broken, "
                     "aborted)")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    for name, text in STATE_COMMANDS:
        p = task.command(name, tasks.cmd_task_command, text)
        p.add_argument("task_id", type=task_id_arg, metavar="ID")
        p.add_argument("--reason", help="recorded in the task's history")
    p = task.command("reassign", tasks.cmd_task_command, "send the task's queued and future jobs to other queues")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    completes(p.add_argument("--queue", action="append", required=True, metavar="Q", help="queue to use (repeatable)"),
              queue_names)
    p.add_argument("--reason", help="recorded in the task's history")
    p = task.command("priority", tasks.cmd_task_command, "set the priority of the task's next jobs")
    p.add_argument("task_id", type=task_id_arg, metavar="ID")
    p.add_argument("priority", type=int, metavar="P")

    p = jedi.command("tasks", tasks.cmd_tasks, "list tasks, newest first unless --order-by says otherwise")
    states = p.add_mutually_exclusive_group()
    completes(states.add_argument("--state", metavar="S", help="one of: " + ", ".join(tasks.task_state_choices())),
              choices(tasks.task_state_choices()))
    states.add_argument("--active", action="store_true", help="tasks not ended (any state but done, finished, "
                        "failed, aborted, broken)")
    states.add_argument("--ended", action="store_true", help="tasks done, finished, failed, aborted or broken")
    p.add_argument("--owner", metavar="O")
    p.add_argument("--name", metavar="PATTERN", help="task name, * as a wildcard (e.g. 'mc23.*')")
    p.add_argument("--since", metavar="WHEN", help="changed since: 30m, 1h, 2d, or an ISO date/time")
    p.add_argument("--order-by", metavar="FIELDS",
                   help='sort order, e.g. "priority desc, task_id"; fields: ' + ", ".join(TASK_SORT_FIELDS))
    p.add_argument("--limit", type=positive_int, default=50, metavar="N",
                   help="tasks to list (default 50), fetched page by page")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")
