"""`panda`: the command line of PanDA mesh. Parser and dispatch; the commands live in
jobs.py, queues.py, up.py and runners.py."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from panda_runtime.client.credentials import CredentialsError

from .arguments import job_id_arg, non_negative_int, positive_int
from .rpc import CliError

Handler = Callable[[argparse.Namespace], int]

EPILOG = """\
examples:
  panda up --demo                          server + 2 pilots on SQLite, with sample jobs
  panda submit --queue local -- echo hi    submit one job, print its id
  panda submit -f jobs.yaml                submit many jobs from YAML
  panda jobs --state running --since 1h    list jobs
  panda job watch 42                       follow a job until it ends
  panda queue list                         queues, their limits, jobs and pilots
  panda task submit -f task.yaml           submit a task to JEDI (see examples/task.yaml)
  panda tasks                              list tasks; panda task show ID for one

The server address comes from --server, else PANDA_SERVER, else 127.0.0.1:25080.
"""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("panda-mesh")
    except Exception:  # not installed as a distribution (e.g. run from a source tree)
        return "unknown"


def _common_options(*, json_flag: bool) -> argparse.ArgumentParser:
    """Options accepted after the subcommand as well as before it. SUPPRESS keeps a
    subcommand's unset option from overwriting the value given before the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--server", metavar="ADDR", default=argparse.SUPPRESS, help="server address (host:port)")
    if json_flag:
        parent.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON"
        )
    return parent


def build_parser() -> argparse.ArgumentParser:
    # Imported here so `panda --help` does not pay for the handlers' imports twice.
    from . import iam as iam_commands
    from . import jobs, login, queues, runners, up
    from . import tasks as jedi_commands
    from .output import job_state_choices, queue_status_choices

    parser = argparse.ArgumentParser(
        prog="panda",
        description="PanDA mesh: submit, follow and manage jobs; run the system locally.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--server", metavar="ADDR", default=None, help="server address (host:port)")
    parser.add_argument("--json", action="store_true", default=False, help="print machine-readable JSON")
    parser.add_argument("--version", action="version", version=f"panda {_version()}")
    read = _common_options(json_flag=True)
    plain = _common_options(json_flag=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        group: argparse._SubParsersAction,  # type: ignore[type-arg]
        name: str,
        handler: Handler,
        help_text: str,
        *,
        json_flag: bool = True,
        **kwargs: object,
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(
            name, help=help_text, description=help_text, parents=[read if json_flag else plain], **kwargs
        )
        sub.set_defaults(handler=handler)
        return sub

    # up
    p = command(
        commands, "up", up.cmd_up, "run the server and pilots in the foreground (Ctrl-C stops)", json_flag=False
    )
    p.add_argument("--pilots", type=non_negative_int, default=2, metavar="N", help="pilots to start (default 2)")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="SQLite database (unless PANDA_DATABASE_URL is set), logs, storage element, pilot work dirs "
        "(default: PANDA_DATA_DIR, else ~/.local/share/panda-mesh)",
    )
    p.add_argument("--demo", action="store_true", help="also submit sample jobs")
    p.add_argument(
        "--stop-timeout",
        type=float,
        default=20.0,
        metavar="S",
        help="seconds to wait for each child to stop before SIGKILL (default 20)",
    )

    # submit
    p = command(
        commands,
        "submit",
        jobs.cmd_submit,
        "submit a job (command after --) or many from YAML (-f)",
        epilog="examples:\n"
        "  panda submit --queue local --output out.txt -- sh -c 'date > out.txt'\n"
        "  panda submit -f jobs.yaml   (a list of jobs, or {jobs: [...]}; keys: queue, command,\n"
        "                               inputs, outputs, cores, memory, walltime, priority,\n"
        "                               max_attempts, label, env)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--file", metavar="FILE", help="YAML file of jobs ('-' reads stdin); flags give defaults")
    p.add_argument("--queue", metavar="Q", help="queue to run on")
    p.add_argument("--input", action="append", metavar="LFN", help="input file (repeatable)")
    p.add_argument("--output", action="append", metavar="NAME", help="output file to stage out (repeatable)")
    p.add_argument("--cores", type=positive_int, metavar="N")
    p.add_argument("--memory", type=positive_int, metavar="MB", help="memory in MiB")
    p.add_argument("--walltime", metavar="S", help="seconds, or e.g. 30m, 2h")
    p.add_argument("--priority", type=int, metavar="P", help="higher runs first")
    p.add_argument("--max-attempts", type=positive_int, metavar="N")
    p.add_argument("--label", metavar="L", help="free-form label, e.g. the transformation")
    p.add_argument("--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    # dest is not "command": that name holds the chosen subcommand.
    p.add_argument(
        "payload", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to run and its arguments"
    )

    # jobs
    p = command(commands, "jobs", jobs.cmd_list, "list jobs, newest first")
    p.add_argument("--state", metavar="S", help="one of: " + ", ".join(job_state_choices()))
    p.add_argument("--queue", metavar="Q")
    p.add_argument("--task", type=int, metavar="ID")
    p.add_argument("--owner", metavar="O")
    p.add_argument("--since", metavar="WHEN", help="changed since: 30m, 1h, 2d, or an ISO date/time")
    p.add_argument("--limit", type=positive_int, default=50, metavar="N", help="jobs per page (default 50)")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")

    # job ...
    job = commands.add_parser("job", help="show, kill, reassign or watch jobs", description="one job or a few")
    job_commands = job.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    p = command(job_commands, "show", jobs.cmd_show, "a job's details, files, history and log tail")
    p.add_argument("job_id", type=job_id_arg, metavar="ID")
    p = command(job_commands, "kill", jobs.cmd_kill, "kill jobs (queued: cancelled; running: told to stop)")
    p.add_argument("job_ids", type=job_id_arg, nargs="+", metavar="ID")
    p.add_argument("--reason", help="recorded in the job's history")
    p = command(job_commands, "reassign", jobs.cmd_reassign, "move jobs that have not started to another queue")
    p.add_argument("job_ids", type=job_id_arg, nargs="+", metavar="ID")
    p.add_argument("--queue", required=True, metavar="Q", help="queue to move them to")
    p = command(
        job_commands,
        "watch",
        jobs.cmd_watch,
        "follow a job until it ends (exit 0 if finished, 1 otherwise)",
    )
    p.add_argument("job_id", type=job_id_arg, metavar="ID")

    # queue ...
    queue = commands.add_parser("queue", help="list, add, show queues; set their status", description="queues")
    queue_commands = queue.add_subparsers(dest="queue_command", metavar="COMMAND", required=True)
    statuses = ", ".join(queue_status_choices())
    p = command(queue_commands, "list", queues.cmd_list, "queues with limits, job counts and pilots")
    p.add_argument("--status", metavar="STATUS", help=f"only queues with this status ({statuses})")
    p = command(queue_commands, "add", queues.cmd_add, "create a queue")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--status", default="online", metavar="STATUS", help=f"{statuses} (default online)")
    p.add_argument("--cores", type=non_negative_int, metavar="N", help="largest job's cores (0: no limit)")
    p.add_argument("--memory", type=non_negative_int, metavar="MB", help="largest job's memory, MiB")
    p.add_argument("--walltime", metavar="S", help="largest job's walltime: seconds, or e.g. 12h")
    p.add_argument("--disk", type=non_negative_int, metavar="MB", help="scratch disk per job, MiB")
    p.add_argument("--storage-element", metavar="URL", help="e.g. file:///data/se/NAME")
    p.add_argument("--description")
    p = command(queue_commands, "show", queues.cmd_show, "one queue")
    p.add_argument("name", metavar="NAME")
    p = command(queue_commands, "set-status", queues.cmd_set_status, "set a queue's status")
    p.add_argument("name", metavar="NAME")
    p.add_argument("status", metavar="STATUS", help=statuses)

    # task ..., tasks, dataset ... (JEDI)
    jedi_commands.add_commands(commands, command)

    # login, logout, whoami; iam ... (the identity service)
    login.add_commands(commands, command)
    iam_commands.add_commands(commands, command)

    # serve ...
    serve = commands.add_parser("serve", help="run a service in the foreground", description="services")
    serve_commands = serve.add_subparsers(dest="serve_command", metavar="SERVICE", required=True)
    command(serve_commands, "server", runners.cmd_serve_server, "the job server (gRPC and metrics)", json_flag=False)
    jedi_commands.add_serve_command(serve_commands, command)
    iam_commands.add_serve_command(serve_commands, command)

    # pilot: its options belong to pilot_agent; main() hands it every argument after `pilot`.
    p = commands.add_parser(
        "pilot",
        help="run a pilot (panda pilot --help for its options)",
        add_help=False,
        description="run a pilot",
    )
    p.set_defaults(handler=runners.cmd_pilot)

    # db ...
    db = commands.add_parser("db", help="database maintenance", description="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    p = command(
        db_commands, "upgrade", runners.cmd_db_upgrade, "run migrations to the newest revision", json_flag=False
    )
    p.add_argument("--database-url", metavar="URL", help="default: PANDA_DATABASE_URL, else SQLite in the data dir")

    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "pilot":
        # Everything after `pilot` goes to the pilot's own parser, including its --help.
        index = list(argv).index("pilot")
        args.pilot_args = list(argv[index + 1 :])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def resolve_server(args: argparse.Namespace) -> None:
    args.server_explicit = args.server is not None
    if args.server is None:
        from panda_cli.settings import CliSettings

        args.server = CliSettings().server_address


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        resolve_server(args)
        handler: Handler = args.handler
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows up here, inside the try, not at exit
        return code
    except CliError as exc:
        print(f"panda: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except CredentialsError as exc:
        print(f"panda: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `panda jobs | head`: the reader left; say nothing, and keep Python quiet at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        from pydantic import ValidationError

        from panda_runtime.settings import SettingsFileError

        if isinstance(exc, ValidationError):
            print(f"panda: bad configuration in the PANDA_* environment or the settings file: {exc}",
                  file=sys.stderr)
            return 1
        if isinstance(exc, SettingsFileError):
            print(f"panda: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
