"""`panda submit`, `panda jobs` and `panda job show|kill|reassign|watch`."""

from __future__ import annotations

import argparse

from panda_cli import jobs
from panda_cli.arguments import Commands, completes, job_id_arg, positive_int, server_address_option
from panda_cli.completion import choices, queue_names
from panda_cli.output import job_state_choices
from panda_runtime.contracts.server import DEFAULT_MAX_SUBMIT_JOBS, JOB_GROUP_FIELDS, JOB_SORT_FIELDS

__all__ = ["register"]

SUBMIT_EPILOG = """\
examples:
  panda submit --queue local --output out.txt -- sh -c 'date > out.txt'
  panda submit -f jobs.yaml   (a list of jobs, or {jobs: [...]}; keys: queue, command,
                               inputs, outputs, cores, memory, walltime, priority,
                               max_attempts, label, env)"""


COUNT_EPILOG = """\
examples:
  panda job count --by state                           jobs by state
  panda job count --by error_code,queue --state failed --since 12h
  panda job count --by state --filter 'queue = "a" OR queue = "b"'"""


def _selection_options(p: argparse.ArgumentParser) -> None:
    """Which jobs: the flags of `panda jobs`, and --filter for anything else."""
    completes(p.add_argument("--state", metavar="S", help="one of: " + ", ".join(job_state_choices())),
              choices(job_state_choices()))
    completes(p.add_argument("--queue", metavar="Q"), queue_names)
    p.add_argument("--task", type=int, metavar="ID")
    p.add_argument("--owner", metavar="O")
    p.add_argument("--since", metavar="WHEN", help="changed since: 30m, 1h, 2d, or an ISO date/time")
    p.add_argument("--filter", metavar="TEXT",
                   help='a filter as the API takes it, e.g. \'state = FAILED OR error_code > 0\'; '
                        "with the flags above, all must hold")


def register(commands: Commands) -> None:
    commands = commands.with_options(server_address_option())
    p = commands.command(
        "submit",
        jobs.cmd_submit,
        "submit a job (command after --) or many from YAML (-f)",
        epilog=SUBMIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--file", metavar="FILE", help="YAML file of jobs ('-' reads stdin); flags give defaults")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help=f"with -f: jobs per call, each call atomic (default {DEFAULT_MAX_SUBMIT_JOBS}, the most a "
                        "server takes unless set otherwise)")
    completes(p.add_argument("--queue", metavar="Q", help="queue to run on (default: the default_queue setting)"),
              queue_names)
    p.add_argument("--input", action="append", metavar="LFN", help="input file (repeatable)")
    p.add_argument("--output", action="append", metavar="NAME", help="output file to stage out (repeatable)")
    p.add_argument("--cores", type=positive_int, metavar="N")
    p.add_argument("--memory", type=positive_int, metavar="MB", help="memory in MiB")
    p.add_argument("--walltime", metavar="S", help="seconds, or e.g. 30m, 2h")
    p.add_argument("--priority", type=int, metavar="P", help="higher runs first")
    p.add_argument("--max-attempts", type=positive_int, metavar="N")
    p.add_argument("--label", metavar="L", help="free-form label, e.g. the transformation")
    p.add_argument("--env", action="append", metavar="K=V", help="environment variable (repeatable)")
    # dest is not "command": that name holds the chosen command.
    p.add_argument(
        "payload", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command to run and its arguments"
    )

    p = commands.command("jobs", jobs.cmd_list, "list jobs, newest first unless --order-by says otherwise")
    _selection_options(p)
    p.add_argument("--order-by", metavar="FIELDS",
                   help='sort order, e.g. "priority desc" or "create_time desc, job_id"; fields: '
                        + ", ".join(JOB_SORT_FIELDS))
    p.add_argument("--limit", type=positive_int, default=50, metavar="N",
                   help="jobs to list (default 50), fetched page by page")
    p.add_argument("--page-token", metavar="T", help="from the previous page's footer")

    job = commands.group("job", "show, kill, reassign or watch jobs", "one job or a few", dest="job_command")
    p = job.command("count", jobs.cmd_count, "count jobs by the values of some fields (the server counts)",
                    epilog=COUNT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--by", metavar="FIELDS",
                   help="fields to group by, separated by commas (at most 4): " + ", ".join(JOB_GROUP_FIELDS)
                        + "; none: the total alone")
    _selection_options(p)
    p.add_argument("--limit", type=positive_int, default=100, metavar="N",
                   help="the most groups to show, the largest (default 100, at most 1000)")
    p = job.command("show", jobs.cmd_show, "a job's details, files, history and log tail")
    p.add_argument("job_id", type=job_id_arg, metavar="ID")
    p = job.command("kill", jobs.cmd_kill, "kill jobs (queued: cancelled; running: told to stop)")
    p.add_argument("job_ids", type=job_id_arg, nargs="+", metavar="ID")
    p.add_argument("--reason", help="recorded in the job's history")
    p = job.command("reassign", jobs.cmd_reassign, "move jobs that have not started to another queue")
    p.add_argument("job_ids", type=job_id_arg, nargs="+", metavar="ID")
    completes(p.add_argument("--queue", required=True, metavar="Q", help="queue to move them to"), queue_names)
    p = job.command("watch", jobs.cmd_watch,
                    "print the states a job went through, then follow it until it ends "
                    "(exit 0 if it finished, 6 if it failed or was cancelled)")
    p.add_argument("job_id", type=job_id_arg, metavar="ID")
